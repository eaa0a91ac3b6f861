"""TLS for the team server: a self-signed certificate maker and the SSL contexts.

The certificate is made with the `openssl` command line (present wherever Python's `ssl`
is; the `cryptography` package is not a dependency). Clients trust the certificate file
itself (`--tls-ca cert.pem`), so no CA infrastructure is needed on a LAN.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import subprocess
from pathlib import Path

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
DEFAULT_DAYS = 825  # the longest lifetime macOS/iOS accept for a TLS server certificate


class CertError(RuntimeError):
    """Certificate creation or loading failed; the message says how to fix it."""


def _san(hosts: list[str]) -> str:
    entries = []
    for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1", "::1"]):
        try:
            ipaddress.ip_address(host)
            entries.append(f"IP:{host}")
        except ValueError:
            entries.append(f"DNS:{host}")
    return ",".join(entries)


def make_self_signed_cert(out_dir: str | Path, hosts: list[str], days: int = DEFAULT_DAYS) -> tuple[Path, Path]:
    """Writes ``cert.pem`` and ``key.pem`` (mode 0600) into `out_dir`; returns their paths.

    The certificate names every host in `hosts` plus localhost/127.0.0.1/::1, so clients
    verify the host name as usual.
    """
    if not hosts or any(not h or any(c in h for c in ",/\n ") for h in hosts):
        raise CertError(f"bad host names {hosts!r}: give plain DNS names or IP addresses")
    if not 1 <= days <= 3650:
        raise CertError(f"days must be in [1, 3650], got {days}")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertError("the `openssl` command is not installed; install it or bring your own --cert/--key")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert, key = out / CERT_NAME, out / KEY_NAME
    # Create the key file 0600 first so the private key is never world-readable, not even briefly.
    os.close(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    cmd = [
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-sha256",
        "-days",
        str(days),
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-subj",
        f"/CN={hosts[0]}",
        "-addext",
        f"subjectAltName={_san(hosts)}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise CertError(f"openssl failed ({done.returncode}): {done.stderr.strip()}")
    os.chmod(key, 0o600)
    return cert, key


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """TLS 1.2+ server context from PEM files; CertError names a missing or bad file."""
    for path in (cert, key):
        if not Path(path).is_file():
            raise CertError(f"{path}: no such file (create one with `deepfim make-cert --out DIR`)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise CertError(f"cannot load certificate {cert} / key {key}: {exc}") from exc
    return ctx


def client_context(ca_file: str | Path | None) -> ssl.SSLContext:
    """Verifying client context trusting `ca_file` (e.g. the server's own cert), else the system store."""
    if ca_file is not None and not Path(ca_file).is_file():
        raise CertError(f"{ca_file}: no such CA/certificate file")
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def is_loopback(host: str) -> bool:
    """True for names that can only reach this machine (plain TCP is allowed only there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
