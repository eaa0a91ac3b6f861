"""TLS for the team server: a self-signed certificate maker and the SSL contexts.

The certificate (ECDSA P-256, SHA-256) is made with the `cryptography` package. Clients trust the
certificate file itself (`--tls-ca cert.pem`), so no CA infrastructure is needed on a LAN.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
DEFAULT_DAYS = 825  # the longest lifetime macOS/iOS accept for a TLS server certificate


class CertError(RuntimeError):
    """Certificate creation or loading failed; the message says how to fix it."""


def _alt_names(hosts: list[str]) -> list:
    from cryptography import x509

    names = []
    for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1", "::1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_self_signed_cert(out_dir: str | Path, hosts: list[str], days: int = DEFAULT_DAYS) -> tuple[Path, Path]:
    """Writes ``cert.pem`` and ``key.pem`` (mode 0600) into `out_dir`; returns their paths.

    The certificate names every host in `hosts` plus localhost/127.0.0.1/::1, so clients
    verify the host name as usual.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts or any(not h or any(c in h for c in ",/\n ") for h in hosts):
        raise CertError(f"bad host names {hosts!r}: give plain DNS names or IP addresses")
    if not 1 <= days <= 3650:
        raise CertError(f"days must be in [1, 3650], got {days}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / CERT_NAME, out / KEY_NAME
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    # The key file is created 0600 before a byte is written: never world-readable, not even briefly.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem_key)
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


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
