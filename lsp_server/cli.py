"""`deepfim lsp` (the language server) and `deepfim complete` (one completion, no editor)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from deepfim.devices import add_device_arguments
from deepfim.lsp_server.editor_settings import MODES

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "lsp":
        parser.add_argument("--tcp", type=int, metavar="PORT", help="listen on TCP instead of stdio (debugging)")
        parser.add_argument("--host", default="127.0.0.1", help="address for --tcp (default: %(default)s)")
        parser.add_argument("--log-file", metavar="PATH", help="also log to this file (stdout is never used)")
        add_device_arguments(parser, quantized=False)  # the editor's `device` setting overrides it
        return
    parser.add_argument("location", metavar="FILE:LINE:COL", help="cursor position, 1-based line and column")
    parser.add_argument("--workspace", metavar="DIR", help="workspace root (default: the current directory)")
    parser.add_argument("--mode", choices=MODES, default="instant", help="instant, or expert (4x budget)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--checkpoint", metavar="DIR", help="checkpoint directory (default: the embedded model)")
    add_device_arguments(parser, quantized=False)
    parser.add_argument("--expert-checkpoint", metavar="DIR", help="checkpoint for expert mode")
    parser.add_argument("--server", metavar="HOST:PORT", help="use a LAN team server instead of a local engine")
    parser.add_argument("--token", help="user token for --server")
    parser.add_argument("--tls-ca", metavar="FILE", help="CA certificate to trust for --server")
    parser.add_argument("--context-budget", type=int, metavar="TOKENS", help="instant-mode prompt budget")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="instant-mode generated-token limit")


def run(args: argparse.Namespace) -> int:
    if args.command == "lsp":
        return run_lsp(args)
    return run_complete(args)


def _import_the_engine_early() -> None:
    """Imports torch and the engine on a thread while pygls starts and the editor initializes:
    the import is most of a cold start (about 1.2 s), and whatever the settings say, the engine
    (or the team-server client, which needs a fraction of it) is loaded next. On a machine
    that has not compiled the C decode step yet (a fresh cache folder), the compiler starts now
    too, beside the imports, instead of after them (1.3 s)."""
    import importlib
    import threading

    from deepfim.kernels.decode_step import cpu

    cpu.prebuild()

    def run() -> None:
        try:
            importlib.import_module("deepfim.engine.serving.local_backend")
        except Exception:  # the real import reports it, when the settings need it
            logger.debug("early engine import failed", exc_info=True)

    threading.Thread(target=run, name="deepfim-import", daemon=True).start()


def run_lsp(args: argparse.Namespace) -> int:
    from deepfim.lsp_server import startup_gc

    startup_gc.pause()  # until the engine is loaded (lsp_server/startup_gc.py)
    _import_the_engine_early()
    from deepfim.lsp_server.editor_settings import Settings
    from deepfim.lsp_server.features import create_server

    if args.log_file:
        handler = logging.FileHandler(args.log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    server = create_server(defaults=Settings(device=args.device))
    try:
        serve(server, tcp_port=args.tcp, host=args.host)
    finally:
        server.close()  # the client may leave without shutdown: engine threads must not keep us alive
    return 0


def serve(server, tcp_port: int | None = None, host: str = "127.0.0.1") -> None:
    """Run `server` on stdio (or TCP) until the client exits."""
    from deepfim.lsp_server.transport import serve_stdio, serve_tcp

    if tcp_port is not None:
        logger.warning("DeepFIM language server listening on %s:%d", host, tcp_port)
        serve_tcp(server, host, tcp_port)
        return
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print() must not corrupt the JSON-RPC stream
    serve_stdio(server, stdin, stdout)


def run_complete(args: argparse.Namespace) -> int:
    from deepfim.kernels.decode_step import cpu

    cpu.prebuild()  # a first run compiles the C decode step beside the imports (kernels/cbuild.py)
    from deepfim.engine.backends import BackendUnavailable
    from deepfim.lsp_server.editor_settings import parse_settings
    from deepfim.lsp_server.oneshot import complete_location, format_report, parse_location

    raw = {
        "mode": args.mode,
        "checkpoint": args.checkpoint,
        "device": args.device,
        "expertCheckpoint": args.expert_checkpoint,
        "server": args.server,
        "token": args.token,
        "tlsCa": args.tls_ca,
    }
    if args.context_budget is not None:
        raw["contextBudget"] = args.context_budget
    if args.max_tokens is not None:
        raw["maxTokens"] = args.max_tokens
    settings, problems = parse_settings({k: v for k, v in raw.items() if v is not None})
    if problems:
        for problem in problems:
            print(f"deepfim complete: {problem}", file=sys.stderr)
        return 2
    try:
        location = parse_location(args.location)
        report = complete_location(location, args.workspace, settings, args.mode)
    except (ValueError, OSError) as exc:
        print(f"deepfim complete: {exc}", file=sys.stderr)
        return 2
    except BackendUnavailable as exc:
        print(f"deepfim complete: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, ensure_ascii=False) if args.json else format_report(report))
    return 0
