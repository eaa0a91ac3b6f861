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
    "train": ("deepfim.engine.training.cli", "train the embedded default model"),
    "eval": ("deepfim.engine.evaluation.cli", "FIM evaluation: held-out holes and HumanEval infilling"),
    "serve": ("deepfim.engine.server.cli", "run the LAN team server"),
    "make-cert": ("deepfim.engine.server.cli", "create a self-signed TLS certificate for `serve`"),
    "users": ("deepfim.engine.server.cli", "list, add or revoke the users of `serve`"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="deepfim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"deepfim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if argv and argv[0] == name:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser, name)
            command_parser.set_defaults(_run=module.run)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=env.log_level(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    threads = env.torch_threads()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `deepfim logits ... | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
