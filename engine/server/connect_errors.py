"""Why a request to a team server failed, said so that the user knows what to do next.

httpx's exceptions (`ConnectError`, `ReadTimeout`, ...) wrap the bare causes
(`ConnectionRefusedError(111, ...)`, `SSLCertVerificationError(...)`) and name neither the
address nor the fix. `explain` turns each into one sentence: what happened at which address,
then the likely cause (no `deepfim serve` there, the wrong port, a service that is not a team
server, a certificate the client does not trust yet, a certificate for another host name).
"""

from __future__ import annotations

import socket
import ssl

import httpx

DEFAULT_PORT = 7431  # `deepfim serve --port`


def _is_the_serve_port(port: int) -> str:
    return f"is `deepfim serve` running there, and is {port} its port? ({DEFAULT_PORT} unless serve was given --port)"


def _cause(exc: BaseException) -> BaseException:
    """The most specific cause httpx wrapped (anyio adds a generic OSError("All connection
    attempts failed") above the ConnectionRefusedError), else `exc` itself."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    causes = [e for e in chain if isinstance(e, OSError | ssl.SSLError) and not isinstance(e, httpx.HTTPError)]
    specific = [e for e in causes if type(e) is not OSError]
    return (specific or causes or chain)[0]


def explain(address: str, host: str, port: int, exc: BaseException, timeout: httpx.Timeout) -> str:
    """One message for a failed request to `address` (`exc` as httpx raised it)."""
    prefix = f"cannot connect to team server {address}"
    cause = _cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason, verify = getattr(cause, "reason", None), getattr(cause, "verify_message", None)
        detail = f"{reason or 'CERTIFICATE_VERIFY_FAILED'}: {verify or cause}"
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
    if isinstance(cause, ssl.SSLError):
        return (
            f"{prefix}: the TLS handshake failed ({getattr(cause, 'reason', None) or cause}); "
            f"{_is_the_serve_port(port)} A server started with --insecure-no-tls needs a client without TLS."
        )
    if isinstance(cause, ConnectionRefusedError):
        return (
            f"{prefix}: nothing is listening there; start the team server with `deepfim serve` (it listens on "
            f"port {DEFAULT_PORT} unless given --port) or fix the port in --server / the `server` setting"
        )
    if isinstance(cause, socket.gaierror):
        return f"{prefix}: cannot resolve the host name {host!r} ({cause.strerror}); check the address"
    if isinstance(exc, httpx.ConnectTimeout):
        return (  # httpx counts the TLS handshake as connecting: a silent service there looks the same
            f"{prefix}: no answer within {timeout.connect:g} s; is the host up and port {port} open in its "
            f"firewall, and {_is_the_serve_port(port)}"
        )
    if isinstance(exc, httpx.TimeoutException):
        return (
            f"{prefix}: something accepted the connection but did not answer as a DeepFIM team server within "
            f"{timeout.read:g} s; {_is_the_serve_port(port)}"
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError) or isinstance(cause, ConnectionResetError):
        return (
            f"{prefix}: the other side does not speak HTTPS as a team server does ({exc!r}); {_is_the_serve_port(port)}"
        )
    if isinstance(cause, OSError) and cause.strerror:
        return f"{prefix}: {cause.strerror}"
    return f"{prefix}: {exc!r}"


def not_a_team_server(address: str, port: int, status: int) -> str:
    """An HTTP answer that no team server gives to its session request."""
    prefix = f"cannot connect to team server {address}"
    return f"{prefix}: it answered HTTP {status}, not as a team server; {_is_the_serve_port(port)}"


def refused(address: str, message: str, status: int) -> str:
    """The server refused the token (401/403)."""
    text = f"server {address} refused the connection: {message}"
    if status == 401:
        text += (
            "; pass a user token with --token (editor setting `token`): the server's admin makes one with "
            "`deepfim users add NAME`"
        )
    return text
