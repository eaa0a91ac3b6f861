"""The core of the team server, below HTTP: users' limits, namespaces, fair admission, the backend.

The HTTP app (http_app.py) hands authenticated, parsed requests to a `CompletionService`, which
applies the user's limits, chooses the namespace, queues the request for fair admission, submits
it to the backend and reports text and the result back through a `JobSink`. Everything here runs
on the server's event loop thread; the backend's callbacks (engine threads) are marshalled onto
it with `call_soon_threadsafe`. Each finished request writes one access-log line (user, mode,
tokens, milliseconds, outcome; never prompt text) to the `deepfim.access` logger.

Namespaces: a request always runs in ``user:<name>`` — whatever the client says — unless it asks
for one of the configured shared team namespaces (``team:<name>``). The engine never reuses
cached state across namespaces, so one user's code cannot surface in another's completion.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import itertools
import logging
import time
from pathlib import Path
from typing import Protocol

from deepfim.engine.api import CancelledError, CompletionBackend, CompletionRequest, CompletionResult, Mode
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.server.admission import Admission, Ticket
from deepfim.engine.server.auth import Principal, UserStore
from deepfim.engine.server.limits import Limits, TokenBucket
from deepfim.engine.server.metrics import ServerMetrics
from deepfim.engine.server.requests import CompleteSpec, RequestError

log = logging.getLogger(__name__)
access_log = logging.getLogger("deepfim.access")


class JobSink(Protocol):
    """Where a job's output goes (an HTTP response)."""

    def on_text(self, job: Job, index: int, text: str, mean_logprob: float) -> None: ...

    def on_done(self, job: Job, result: CompletionResult | None, error: RequestError | None) -> None: ...


@dataclasses.dataclass
class UserState:
    limits: Limits
    bucket: TokenBucket
    inflight: int = 0
    outcomes: dict[str, int] = dataclasses.field(default_factory=lambda: {"ok": 0, "cancelled": 0, "error": 0})
    refused: int = 0
    generated_tokens: int = 0


@dataclasses.dataclass(eq=False)
class Job:
    """One accepted request from arrival to result."""

    spec: CompleteSpec
    user: str
    sink: JobSink
    request: CompletionRequest
    arrived: float = dataclasses.field(default_factory=time.perf_counter)
    ticket: Ticket | None = None
    handle: object | None = None  # CompletionHandle once submitted
    admitted_at: float | None = None
    first_text_at: float | None = None
    finished: bool = False


class CompletionService:
    def __init__(
        self,
        backend: CompletionBackend,
        users: UserStore,
        limits: Limits | None = None,
        shared_namespaces: tuple[str, ...] = (),
    ) -> None:
        self.backend = backend
        self.users = users
        self.limits = limits or Limits()
        self.shared_namespaces = frozenset(shared_namespaces)
        tok_path = Path(backend.tokenizer_path)
        self.tokenizer_file = tok_path / "tokenizer.json" if tok_path.is_dir() else tok_path
        self.tokenizer = Tokenizer.from_file(tok_path)
        self.tokenizer_bytes = self.tokenizer_file.read_bytes()
        self.tokenizer_sha256 = hashlib.sha256(self.tokenizer_bytes).hexdigest()
        self.fim_orders = {}
        for mode in Mode:
            try:
                self.fim_orders[mode.value] = list(backend.fim_orders(mode))
            except (KeyError, ValueError):
                continue  # this backend does not serve `mode`
        if not self.fim_orders:
            raise ValueError("the backend serves none of the modes " + ", ".join(Mode))
        self.profiles = {mode: backend.serving_profile(mode) for mode in self.fim_orders}
        self.admission = Admission(self.limits.max_backend_inflight)
        self.connections = 0  # open HTTP connections (kept by the connection guard)
        self.metrics = ServerMetrics(self)
        self._user_state: dict[str, UserState] = {}
        self._seq = itertools.count(1)
        self.loop: asyncio.AbstractEventLoop | None = None  # set by the server on start

    def model_loaded(self) -> bool:
        """Whether the backend can serve (its engine threads are alive; a remote one is reachable)."""
        healthy = getattr(self.backend, "healthy", None)
        try:
            return bool(healthy()) if healthy is not None else True
        except Exception:
            return False

    # ------------------------------------------------------------ users and limits

    def authenticate(self, token: object) -> Principal | None:
        return self.users.authenticate(token)

    def state(self, principal: Principal) -> UserState:
        st = self._user_state.get(principal.name)
        limits = self.limits.for_user(principal.limits)
        if st is None or st.limits != limits:  # new user, or the users file changed their limits
            bucket = TokenBucket(limits.requests_per_second, limits.burst)
            st = self._user_state[principal.name] = (
                UserState(limits, bucket) if st is None else dataclasses.replace(st, limits=limits, bucket=bucket)
            )
        return st

    def namespace_for(self, principal: Principal, requested: str | None) -> str:
        if requested is None or requested in ("local", f"user:{principal.name}"):
            return f"user:{principal.name}"
        name = requested.removeprefix("team:")
        if name in self.shared_namespaces:
            return f"team:{name}"
        raise RequestError("forbidden", f"namespace {requested!r} is not a shared team namespace")

    def session(self, principal: Principal) -> dict:
        """What a client needs to pack prompts and stay within its limits."""
        return {
            "user": principal.name,
            "role": principal.role,
            "modes": self.fim_orders,
            "profiles": self.profiles,
            "tokenizer_sha256": self.tokenizer_sha256,
            "tokenizer_bytes": len(self.tokenizer_bytes),
            "vocab_size": self.tokenizer.vocab_size,
            "limits": self.limits.for_user(principal.limits).public(),
            "shared_namespaces": sorted(self.shared_namespaces),
        }

    def user_stats(self, principal: Principal) -> dict:
        """An ordinary user's own figures; the admin also gets the server's and the backend's."""
        st = self.state(principal)
        own = {
            "user": principal.name,
            "requests": {**st.outcomes, "refused": st.refused},
            "generated_tokens": st.generated_tokens,
            "inflight": st.inflight,
            "limits": st.limits.public(),
        }
        if not principal.is_admin:
            return own
        return {**own, "server": self.server_stats(), "backend": self.backend.stats()}

    def server_stats(self) -> dict:
        return {
            "connections": self.connections,
            "running": self.admission.running,
            "queued": self.admission.queued,
            "users_with_requests": sorted(n for n, st in self._user_state.items() if st.inflight),
        }

    def reject(self, principal: Principal | None, code: str) -> None:
        """Counts an error reply (and, per user, a refused request)."""
        self.metrics.errors.labels(code).inc()
        if principal is not None:
            self.metrics.user_rejected.labels(principal.name, code).inc()
            self.state(principal).refused += 1

    # ------------------------------------------------------------ requests

    def start(self, principal: Principal, spec: CompleteSpec, sink: JobSink) -> Job:
        """Checks limits, then queues the request; RequestError says why it was refused."""
        if principal.is_admin:
            raise RequestError("forbidden", "the admin token cannot request completions")
        st = self.state(principal)
        lim = st.limits
        if spec.mode not in self.fim_orders:
            raise RequestError("unknown_mode", f"mode {spec.mode!r} is not served (serving {sorted(self.fim_orders)})")
        if len(spec.prompt) > lim.max_prompt_tokens:
            raise RequestError(
                "prompt_too_long", f"prompt of {len(spec.prompt)} tokens exceeds your limit of {lim.max_prompt_tokens}"
            )
        if spec.sampling.max_tokens > lim.max_new_tokens:
            raise RequestError(
                "bad_request", f"max_tokens {spec.sampling.max_tokens} exceeds your limit of {lim.max_new_tokens}"
            )
        namespace = self.namespace_for(principal, spec.namespace)
        if st.inflight >= lim.max_inflight:
            raise RequestError(
                "too_many_inflight", f"{st.inflight} requests already in flight (limit {lim.max_inflight})"
            )
        wait = st.bucket.take()
        if wait > 0:
            raise RequestError(
                "rate_limited", f"over {lim.requests_per_second:g} requests/s; retry in {wait * 1000:.0f} ms"
            )
        request = CompletionRequest(
            prompt=spec.prompt,
            sampling=spec.sampling,
            priority=spec.priority,
            namespace=namespace,
            mode=spec.mode,
            request_id=f"{principal.name}/{next(self._seq)}/{spec.id}",
        )
        job = Job(spec, principal.name, sink, request)
        st.inflight += 1
        job.ticket = self.admission.enqueue(principal.name, spec.priority, lambda: self._launch(job))
        return job

    def cancel(self, job: Job) -> None:
        """Withdraws a queued job, or asks the engine to stop a running one (idempotent)."""
        if job.finished:
            return
        if job.ticket is not None and self.admission.withdraw(job.ticket):
            self._finish(job, None, RequestError("cancelled", "cancelled before it started"))
        elif job.handle is not None:
            job.handle.cancel()

    def _launch(self, job: Job) -> None:
        job.admitted_at = time.perf_counter()
        loop = self.loop
        assert loop is not None, "service used before the server started"

        def on_text(index: int, text: str, mean_logprob: float) -> None:  # engine thread
            _post(loop, self._text, job, index, text, mean_logprob)

        try:
            job.handle = self.backend.submit(job.request, on_text)
        except Exception as exc:
            # The engine validates too (e.g. prompt + max_tokens beyond its context): a ValueError
            # is the request's fault, anything else the engine's.
            code = "bad_request" if isinstance(exc, ValueError) else "backend_error"
            log.log(logging.INFO if code == "bad_request" else logging.ERROR, "backend refused %s: %r",
                    job.request.request_id, exc)  # fmt: skip
            loop.call_soon(self._finish, job, None, RequestError(code, str(exc)))
            return
        job.handle.future.add_done_callback(lambda fut: _post(loop, self._done, job, fut))

    def _text(self, job: Job, index: int, text: str, mean_logprob: float) -> None:
        if job.finished or not text:
            return
        if job.first_text_at is None:
            job.first_text_at = time.perf_counter()
            self.metrics.first_text.labels(job.spec.mode).observe(job.first_text_at - job.arrived)
        job.sink.on_text(job, index, text, mean_logprob)

    def _done(self, job: Job, fut: concurrent.futures.Future) -> None:
        try:
            result = fut.result()
        except (CancelledError, concurrent.futures.CancelledError):
            self._finish(job, None, RequestError("cancelled", "cancelled"))
            return
        except Exception as exc:
            log.error("request %s failed in the backend: %r", job.request.request_id, exc)
            self._finish(job, None, RequestError("backend_error", str(exc) or type(exc).__name__))
            return
        waited_ms = ((job.admitted_at or job.arrived) - job.arrived) * 1000.0
        result = dataclasses.replace(
            result, timings=dataclasses.replace(result.timings, queue_ms=result.timings.queue_ms + waited_ms)
        )
        self._finish(job, result, None)

    def _finish(self, job: Job, result: CompletionResult | None, error: RequestError | None) -> None:
        if job.finished:
            return
        job.finished = True
        if job.ticket is not None:
            self.admission.finished(job.ticket)
        st = self._user_state[job.user]
        st.inflight -= 1
        outcome = "error" if error is not None and error.code != "cancelled" else "ok"
        if (error is not None and error.code == "cancelled") or (result is not None and result.cancelled):
            outcome = "cancelled"
        seconds = time.perf_counter() - job.arrived
        generated = 0
        m = self.metrics
        m.requests.labels(job.spec.mode, outcome).inc()
        m.user_requests.labels(job.user, outcome).inc()
        m.latency.labels(job.spec.mode).observe(seconds)
        if error is not None:
            m.errors.labels(error.code).inc()
        if result is not None:
            t = result.timings
            m.prompt_tokens.inc(t.prompt_tokens or len(job.request.prompt))
            m.cached_tokens.inc(t.cached_tokens)
            generated = t.generated_tokens or sum(len(c.token_ids) for c in result.candidates)
            m.generated_tokens.inc(generated)
            m.user_tokens.labels(job.user).inc(generated)
        st.outcomes[outcome] += 1
        st.generated_tokens += generated
        access_log.info(
            "user=%s mode=%s prompt_tokens=%d generated_tokens=%d ms=%.0f outcome=%s%s",
            job.user, job.spec.mode, len(job.request.prompt), generated, seconds * 1000, outcome,
            f" error={error.code}" if error is not None and outcome == "error" else "",
        )  # fmt: skip
        try:
            job.sink.on_done(job, result, error)
        except Exception:
            log.exception("delivering the result of %s failed", job.request.request_id)


def _post(loop: asyncio.AbstractEventLoop, fn, *args) -> None:
    """Runs `fn(*args)` on the server loop from any thread; dropped once the loop is closed."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass  # the server is shutting down; nobody is left to tell
