"""Why a connection to a team server failed, said so that the user knows what to do next.

The bare exceptions (`TimeoutError()`, `ConnectionRefusedError(111, ...)`,
`SSLCertVerificationError(...)`) name neither the address nor the fix. `explain` turns each
failure of `RemoteBackend`'s connect steps into one sentence: what happened at which
address, then the likely cause (no `deepfim serve` there, the wrong port, its HTTP port, a
certificate the client does not trust yet, a certificate for another host name).
"""

from __future__ import annotations

import socket
import ssl

from deepfim.engine.server.frames import ConnectionClosed, ProtocolError

DEFAULT_PORT = 7431  # `deepfim serve --port`; its HTTP side listens on the next port

# the steps of a connection, in order: TCP connect, TLS handshake, hello -> welcome, tokenizer
STEPS = ("connect", "tls", "hello", "tokenizer")


def _is_the_serve_port(port: int) -> str:
    return (
        f"is `deepfim serve` running there, and is {port} its msgpack port? (that is {DEFAULT_PORT} unless "
        f"serve was given --port; the port after it is the HTTP side, which editors cannot use)"
    )


def explain(address: str, host: str, port: int, step: str, exc: BaseException, waited_s: float) -> str:
    """One message for a failed connection `step` (see STEPS) to `address`."""
    prefix = f"cannot connect to team server {address}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason, verify = getattr(exc, "reason", None), getattr(exc, "verify_message", None)
        detail = f"{reason or 'CERTIFICATE_VERIFY_FAILED'}: {verify or exc}"
        if "hostname" in detail.lower() or "ip address mismatch" in detail.lower():
            return (
                f"{prefix}: its TLS certificate is not made out to {host!r} ({detail}); connect by a name the "
                f"certificate lists, or make one for this name on the server with `deepfim make-cert --host {host}`"
            )
        return (
            f"{prefix}: its TLS certificate is not trusted ({detail}); pass the server's certificate with "
            f"--tls-ca FILE (editor setting `tlsCa`): `deepfim serve` prints where it is when it starts "
            f"(by default <cache dir>/server/tls/cert.pem on the server)"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"{prefix}: the TLS handshake failed ({getattr(exc, 'reason', None) or exc}); {_is_the_serve_port(port)} "
            f"A server started with --insecure-no-tls needs a client without TLS."
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"{prefix}: nothing is listening there; start the team server with `deepfim serve` (it listens on "
            f"port {DEFAULT_PORT} unless given --port) or fix the port in --server / the `server` setting"
        )
    if isinstance(exc, socket.gaierror):
        return f"{prefix}: cannot resolve the host name {host!r} ({exc.strerror}); check the address"
    if isinstance(exc, TimeoutError):
        if step == "connect":
            return f"{prefix}: no answer within {waited_s:g} s; is the host up, and port {port} open in its firewall?"
        if step == "tokenizer":
            return f"{prefix}: the tokenizer did not arrive within {waited_s:g} s; the network may be slow, try again"
        return (
            f"{prefix}: something accepted the connection but did not answer as a DeepFIM team server within "
            f"{waited_s:g} s; {_is_the_serve_port(port)}"
        )
    if isinstance(exc, ConnectionClosed | ProtocolError | ConnectionResetError):
        return f"{prefix}: the other side does not speak the team protocol ({exc!r}); {_is_the_serve_port(port)}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{prefix}: {exc.strerror}"
    return f"{prefix}: {exc!r}"


def refused(address: str, reply: dict) -> str:
    """The server answered `hello` with an error instead of `welcome`."""
    message = f"server {address} refused the connection: {reply.get('message')}"
    if reply.get("code") == "unauthorized":
        message += (
            "; pass a user token with --token (editor setting `token`): the server's admin makes one with "
            "`deepfim add-user NAME`"
        )
    return message
