"""`deepfim serve`, `deepfim make-cert` and `deepfim users list|add|revoke`.

Defaults keep the commands in agreement without flags: the users file, admin token and
certificate live under ``<cache dir>/server/``. `serve` binds to 127.0.0.1 unless told
``--host 0.0.0.0``, and creates a self-signed certificate on first start when none is given.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
from pathlib import Path

from deepfim import env
from deepfim.devices import add_device_arguments
from deepfim.engine.server.connect_errors import DEFAULT_PORT

log = logging.getLogger(__name__)


def _server_dir() -> Path:
    return env.cache_dir() / "server"


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "make-cert":
        parser.add_argument("--out", required=True, help="directory for cert.pem and key.pem")
        parser.add_argument("--host", action="append", default=[], help="host name or IP the cert is for (repeat)")
        parser.add_argument("--days", type=int, default=825, help="days the certificate is valid")
        return
    if command == "users":
        parser.add_argument("action", choices=("list", "add", "revoke"),
                            help="list the users, add one (prints the token once), or revoke one's token")  # fmt: skip
        parser.add_argument("name", nargs="?", help="user name (letters, digits, . _ -) for add and revoke")
        parser.add_argument("--replace", action="store_true", help="add: issue a new token for an existing user")
        parser.add_argument("--json", action="store_true", help="list: as JSON")
        parser.add_argument("--users", default=str(_server_dir() / "users.json"), help="users file (JSON)")
        return
    parser.add_argument("--users", default=str(_server_dir() / "users.json"), help="users file (JSON)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for the whole LAN)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTPS port (0: any free port)")
    parser.add_argument("--cert", help="TLS certificate (PEM); default: made once under the cache dir")
    parser.add_argument("--key", help="TLS private key (PEM)")
    parser.add_argument("--insecure-no-tls", action="store_true", help="plain HTTP, loopback debugging only")
    parser.add_argument(
        "--admin-token-file",
        default=str(_server_dir() / "admin-token"),
        help="file holding the admin token (created when missing)",
    )
    parser.add_argument("--checkpoint", default=None, help="checkpoint dir (default: the embedded model)")
    parser.add_argument("--expert-checkpoint", default=None, help="checkpoint serving expert mode")
    parser.add_argument("--threads", type=int, default=None, help="engine CPU threads (default: torch's, all cores)")
    add_device_arguments(parser)
    parser.add_argument(
        "--tp",
        type=int,
        default=1,
        metavar="N",
        help="tensor-parallel ranks: attention heads split over N processes (1 or the world size)",
    )
    parser.add_argument(
        "--ep",
        type=int,
        default=1,
        metavar="N",
        help="expert-parallel ranks: routed experts split over N processes (1 or the world size)",
    )
    parser.add_argument(
        "--shared-namespace",
        action="append",
        default=[],
        help="a team namespace every user may share cached state in (repeat)",
    )
    from deepfim.engine.server.limits import Limits

    d = Limits()
    limits = parser.add_argument_group("limits", "per-user ones can be overridden in the users file")
    for flag, dest, kind, meaning in (
        ("--max-body-bytes", None, int, "largest request body a client may send, in bytes"),
        ("--max-prompt-tokens", None, int, "prompt tokens per request, per user"),
        ("--max-new-tokens", None, int, "generated tokens per request, per user"),
        ("--rate", "requests_per_second", float, "requests per second per user (token bucket)"),
        ("--burst", None, int, "requests a user may send at once above --rate"),
        ("--max-inflight", None, int, "queued + running requests per user"),
        ("--max-backend-inflight", None, int, "requests handed to the engine at once (decoded together)"),
        ("--max-connections", None, int, "open connections, all clients together"),
        ("--max-connections-per-address", None, int, "open connections from one address, counted from accept"),
    ):
        dest = dest or flag[2:].replace("-", "_")
        limits.add_argument(flag, type=kind, dest=dest, metavar="N", help=f"{meaning} (default: {getattr(d, dest)})")


def run(args: argparse.Namespace) -> int:
    from deepfim.engine.server.auth import AuthError
    from deepfim.engine.server.tls import CertError

    try:
        if args.command == "make-cert":
            return _make_cert(args)
        if args.command == "users":
            return _users(args)
        return _serve(args)
    except (AuthError, CertError, ValueError) as exc:
        print(f"deepfim {args.command}: {exc}", file=sys.stderr)
        return 2


def _make_cert(args) -> int:
    from deepfim.engine.server.tls import make_self_signed_cert

    cert, key = make_self_signed_cert(args.out, args.host or [socket.gethostname()], args.days)
    print(f"certificate: {cert}\nprivate key: {key}\nclients trust it with: tlsCa = {cert}")
    return 0


def _users(args) -> int:
    import json

    from deepfim.engine.server.auth import add_user, list_users, revoke_user

    if args.action != "list" and not args.name:
        raise ValueError(f"`deepfim users {args.action}` needs a user name")
    if args.action == "add":
        token = add_user(args.users, args.name, replace=args.replace)
        print(f"user {args.name!r} added to {args.users}; give them this token (it is shown only once):",
              file=sys.stderr)  # fmt: skip
        print(token)
    elif args.action == "revoke":
        revoke_user(args.users, args.name)
        print(f"user {args.name!r} revoked: their token stops working at their next request", file=sys.stderr)
    else:
        users = list_users(args.users)
        if args.json:
            print(json.dumps(users, indent=2))
        for user in [] if args.json else users:
            limits = ", ".join(f"{k}={v}" for k, v in user["limits"].items())
            print(f"{user['name']:<24} key {user['key_id']}  created {user['created'] or '?'}  {limits}".rstrip())
    return 0


def _limits(args):
    import dataclasses

    from deepfim.engine.server.limits import Limits

    names = {f.name for f in dataclasses.fields(Limits)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return Limits(**given)


def _tls(args):
    from deepfim.engine.server.tls import CERT_NAME, KEY_NAME, is_loopback, make_self_signed_cert, server_context

    if args.insecure_no_tls:
        if not is_loopback(args.host):
            raise ValueError(f"--insecure-no-tls is only allowed with a loopback --host, not {args.host!r}")
        log.warning("*** TLS IS OFF: tokens and code travel in clear text (loopback debugging only) ***")
        return None, None
    if bool(args.cert) != bool(args.key):
        raise ValueError("give both --cert and --key, or neither")
    cert, key = args.cert, args.key
    if cert is None:
        tls_dir = _server_dir() / "tls"
        cert, key = tls_dir / CERT_NAME, tls_dir / KEY_NAME
        if not cert.exists():
            hosts = [socket.gethostname()] + ([args.host] if args.host not in ("0.0.0.0", "::", "") else [])
            make_self_signed_cert(tls_dir, hosts)
            print(f"made a self-signed certificate: {cert} (clients trust it with tlsCa)", file=sys.stderr)
    return server_context(cert, key), cert


def _serve(args) -> int:
    from deepfim.kernels.decode_step import cpu

    # A first start compiles the C decode step beside the imports (kernels/cbuild.py), at once,
    # and the engine is built once it is there (`_serve_rank0`): the language server holds the
    # step back until its first suggestion is out, but a team server has no one first request to
    # protect, and every client's decode ran on the modules until the step was built
    # (`deepfim bench server` on a fresh cache folder: 1 client at p50 91 ms, against 20 ms)
    cpu.prebuild(later=False)
    limits = _limits(args)
    if env.torchrun_ranks() is not None:  # every process runs this command: only rank 0 touches files
        rank0 = _start_ranks(args)
        if rank0 is None:
            return 0  # a follower rank: rank 0 has stopped
        return _serve_rank0(args, limits, rank0)
    return _serve_rank0(args, limits, None)


def _serve_rank0(args, limits, rank0) -> int:
    from deepfim.engine.backends import BackendSpec, make_backend
    from deepfim.engine.server.auth import UserStore, load_admin_token
    from deepfim.engine.server.team_server import ServerThread

    backend = None
    try:
        ssl_context, cert = _tls(args)
        users = UserStore(args.users, load_admin_token(args.admin_token_file))
        if not users.user_names():
            raise ValueError(f"no users in {args.users}; add one with `deepfim users add NAME --users {args.users}`")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        if rank0 is None and max(args.tp, args.ep) > 1:
            rank0 = _start_ranks(args)  # spawns ranks 1 .. N-1
        spec = BackendSpec(args.checkpoint, args.expert_checkpoint, threads=args.threads, device=args.device,
                           keep_quantized=args.keep_quantized, model_loader=rank0.load if rank0 else None,
                           hot_experts=args.hot_experts)  # fmt: skip
        from deepfim.kernels.decode_step import cpu

        cpu.wait_built()  # the rest of the compile started at process start (see `_serve`)
        backend = make_backend(spec)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        server = ServerThread(backend, users, host=args.host, port=args.port, ssl_context=ssl_context, limits=limits,
                              shared_namespaces=tuple(args.shared_namespace)).start()  # fmt: skip
        try:
            ranks = f", {max(args.tp, args.ep)} ranks (tp {args.tp}, ep {args.ep})" if rank0 is not None else ""
            print(
                f"deepfim team server: https {args.host}:{server.port}, {len(users.user_names())} users, "
                f"TLS {f'on (clients trust {cert})' if cert else 'OFF'}{ranks}",
                file=sys.stderr,
                flush=True,
            )
            while not stop.wait(1.0):
                pass
        finally:
            server.stop()
    finally:
        if backend is not None:
            backend.close()
        if rank0 is not None:
            rank0.close()
    return 0


def _start_ranks(args):
    """`--tp/--ep` (or torchrun): rank 0's handle here, None on the other ranks once they are done."""
    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.serving.distributed_launch import start

    if args.expert_checkpoint and args.expert_checkpoint != args.checkpoint:
        raise ValueError("--tp/--ep serve one checkpoint in both modes (drop --expert-checkpoint)")
    return start(args.tp, args.ep, args.device, args.keep_quantized, args.checkpoint or DEFAULT_MODEL_DIR)
