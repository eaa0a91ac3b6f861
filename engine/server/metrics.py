"""Prometheus metrics of the team server, kept with `prometheus_client`.

Two registries: the public one (server-wide series and the process, platform and garbage-
collector collectors) that any valid token may read, and the per-user one (series labelled by
user) shown only to the admin token. Updated on the event loop thread.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

disable_created_metrics()  # `*_created` timestamps per series: noise for this server's dashboards

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    """Every series the server exports; the gauges read live state from `service`."""

    def __init__(self, service) -> None:
        self.public = public = CollectorRegistry()
        self.per_user = per_user = CollectorRegistry()
        process_collector.ProcessCollector(registry=public)
        platform_collector.PlatformCollector(registry=public)
        gc_collector.GCCollector(registry=public)
        self.requests = Counter(
            "deepfim_requests", "Completion requests finished", ("mode", "outcome"), registry=public
        )
        self.errors = Counter("deepfim_errors", "Error replies sent, by code", ("code",), registry=public)
        self.latency = Histogram(
            "deepfim_request_duration_seconds", "Request arrival to result", ("mode",), buckets=LATENCY_BUCKETS,
            registry=public,
        )  # fmt: skip
        self.first_text = Histogram(
            "deepfim_time_to_first_text_seconds", "Request arrival to first streamed text", ("mode",),
            buckets=LATENCY_BUCKETS, registry=public,
        )  # fmt: skip
        self.prompt_tokens = Counter("deepfim_prompt_tokens", "Prompt tokens of admitted requests", registry=public)
        self.cached_tokens = Counter(
            "deepfim_cached_prompt_tokens", "Prompt tokens served from the prefix cache", registry=public
        )
        self.generated_tokens = Counter("deepfim_generated_tokens", "Tokens generated", registry=public)
        Gauge("deepfim_open_connections", "Open HTTP connections", registry=public).set_function(
            lambda: service.connections
        )
        Gauge("deepfim_inflight_requests", "Requests running in the backend", registry=public).set_function(
            lambda: service.admission.running
        )
        Gauge("deepfim_queued_requests", "Requests waiting for admission", registry=public).set_function(
            lambda: service.admission.queued
        )
        self.user_requests = Counter(
            "deepfim_user_requests", "Requests per user and outcome", ("user", "outcome"), registry=per_user
        )
        self.user_tokens = Counter("deepfim_user_generated_tokens", "Tokens generated per user", ("user",),
                                   registry=per_user)  # fmt: skip
        self.user_rejected = Counter(
            "deepfim_user_rejected", "Requests refused per user and code", ("user", "code"), registry=per_user
        )

    def render(self, per_user: bool) -> bytes:
        """The text exposition format; per-user series only when `per_user`."""
        text = generate_latest(self.public)
        return text + generate_latest(self.per_user) if per_user else text
