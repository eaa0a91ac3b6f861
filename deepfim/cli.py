"""The `deepfim` console command.

Each subcommand lives beside the code it drives; a module named here must define
`add_arguments(parser, command)` and `run(args) -> int`. Modules are imported only when
their command runs, so `deepfim lsp` never pays for importing the trainer.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from deepfim import __version__, env

COMMANDS: dict[str, tuple[str, str]] = {
    "complete": ("deepfim.lsp_server.cli", "complete at FILE:LINE:COL without an editor"),
    "lsp": ("deepfim.lsp_server.cli", "run the language server (stdio, or --tcp PORT)"),
    "index": ("deepfim.context.cli", "index a workspace and print statistics"),
    "context": ("deepfim.context.cli", "print the exact prompt the model sees at FILE:LINE:COL"),
    "logits": ("deepfim.engine.cli", "print next-token logits of a checkpoint"),
    "generate": ("deepfim.engine.cli", "FIM-generate from a checkpoint given prefix and suffix text"),
    "checksum": ("deepfim.engine.cli", "write (or --verify) a checkpoint's SHA256SUMS manifest"),
    "plan": ("deepfim.engine.plan_cli", "memory a checkpoint needs on a device (weights, V4 state), before loading"),
    "train": ("deepfim.engine.training.cli", "train the embedded default model"),
    "eval": ("deepfim.engine.evaluation.cli", "FIM evaluation: held-out holes and HumanEval infilling"),
    "serve": ("deepfim.engine.server.cli", "run the LAN team server"),
    "make-cert": ("deepfim.engine.server.cli", "create a self-signed TLS certificate for `serve`"),
    "users": ("deepfim.engine.server.cli", "list, add or revoke the users of `serve`"),
    "bench": ("deepfim.bench.cli", "benchmark suites: a report with figures, methods and plots"),
}


LOG_LEVELS = env.LOG_LEVELS


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, unless the help already says it or the
    default is nothing worth showing (None, False, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is argparse.SUPPRESS or default is None or default is False or default in ([], ""):
            return text
        if "default" in text or not (action.option_strings or action.nargs in ("?", "*")):
            return text
        return f"{text} (default: %(default)s)"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `deepfim` parser. Only `command`'s own arguments are added, since that imports the
    module that defines them."""
    parser = argparse.ArgumentParser(prog="deepfim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"deepfim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser, name)
            command_parser.add_argument(
                "--log-level",
                type=str.upper,
                choices=LOG_LEVELS,
                default=env.log_level(),
                metavar="LEVEL",
                help=f"what is logged to stderr: {', '.join(LOG_LEVELS)} (default: %(default)s; "
                "$DEEPFIM_LOG_LEVEL sets the default)",
            )
            command_parser.set_defaults(_run=module.run)
    return parser


def command_parser(command: str) -> argparse.ArgumentParser:
    """The parser of one subcommand, with its arguments (for `--help` checks)."""
    sub = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def cap_torch_threads(threads: int) -> None:
    """$DEEPFIM_THREADS for torch, without importing torch here: `deepfim lsp` imports it on a
    thread beside the language server's own imports (a cold start), and an import here would put
    its 0.8 s in front of everything. Torch takes its thread count from OMP_NUM_THREADS when it
    loads, in every thread."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(argv[0] if argv else None)
        threads = env.torch_threads()
    except ValueError as exc:  # a malformed DEEPFIM_* variable
        print(f"deepfim: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if threads is not None:
        cap_torch_threads(threads)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `deepfim logits ... | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
