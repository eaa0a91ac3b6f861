"""Prometheus metrics of the team server, rendered in the text exposition format 0.0.4.

A dozen series do not justify a client library: counters, gauges and histograms are kept
here and updated on the event loop thread. Series labelled by user are shown only to the
admin token (`render(per_user=True)`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple, extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = (), per_user: bool = False):
        self.name, self.help, self.labelnames, self.per_user = name, help_text, labels, per_user
        self.values: dict[tuple, float] = {}

    def inc(self, *labels, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels) -> float:
        return self.values.get(labels, 0.0)

    def samples(self) -> list[str]:
        return [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in sorted(self.values.items())]


class Gauge:
    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], dict[tuple, float]], labels=()):
        self.name, self.help, self.labelnames, self.per_user = name, help_text, labels, False
        self.read = read

    def samples(self) -> list[str]:
        return [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in sorted(self.read().items())]


class Histogram:
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = (), buckets=LATENCY_BUCKETS):
        self.name, self.help, self.labelnames, self.per_user = name, help_text, labels, False
        self.buckets = tuple(buckets) + (math.inf,)
        self.series: dict[tuple, list] = {}  # labels -> [bucket counts..., sum]

    def observe(self, value: float, *labels) -> None:
        data = self.series.setdefault(labels, [0] * len(self.buckets) + [0.0])
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                data[i] += 1
        data[-1] += value

    def samples(self) -> list[str]:
        lines = []
        for key, data in sorted(self.series.items()):
            for bound, count in zip(self.buckets, data, strict=False):
                le = 'le="' + _num(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {count}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_num(data[-1])}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, key)} {data[len(self.buckets) - 1]}")
        return lines


class ServerMetrics:
    """Every series the server exports; `gauges` reads live state from the server."""

    def __init__(self, gauges: Callable[[], dict[str, dict[tuple, float]]]) -> None:
        self.requests = Counter(
            "deepfim_requests_total", "Completion requests finished", ("transport", "mode", "outcome")
        )
        self.errors = Counter("deepfim_errors_total", "Error replies sent, by code", ("code",))
        self.latency = Histogram("deepfim_request_duration_seconds", "Request arrival to result", ("mode",))
        self.first_text = Histogram(
            "deepfim_time_to_first_text_seconds", "Request arrival to first streamed text", ("mode",)
        )
        self.prompt_tokens = Counter("deepfim_prompt_tokens_total", "Prompt tokens of admitted requests")
        self.cached_tokens = Counter("deepfim_cached_prompt_tokens_total", "Prompt tokens served from the prefix cache")
        self.generated_tokens = Counter("deepfim_generated_tokens_total", "Tokens generated")
        self.user_requests = Counter(
            "deepfim_user_requests_total", "Requests per user and outcome", ("user", "outcome"), per_user=True
        )
        self.user_tokens = Counter(
            "deepfim_user_generated_tokens_total", "Tokens generated per user", ("user",), per_user=True
        )
        self.user_rejected = Counter(
            "deepfim_user_rejected_total",
            "Requests refused per user and code",
            ("user", "code"),
            per_user=True,
        )

        def gauge(name: str, help_text: str, labels=()):
            return Gauge(name, help_text, lambda: gauges().get(name, {}), labels)

        self._all = [
            self.requests,
            self.errors,
            self.latency,
            self.first_text,
            self.prompt_tokens,
            self.cached_tokens,
            self.generated_tokens,
            gauge("deepfim_active_connections", "Open connections", ("transport",)),
            gauge("deepfim_inflight_requests", "Requests running in the backend"),
            gauge("deepfim_queued_requests", "Requests waiting for admission"),
            self.user_requests,
            self.user_tokens,
            self.user_rejected,
        ]

    def render(self, per_user: bool) -> str:
        out = []
        for metric in self._all:
            if metric.per_user and not per_user:
                continue
            out.append(f"# HELP {metric.name} {metric.help}")
            out.append(f"# TYPE {metric.name} {metric.kind}")
            out.extend(metric.samples())
        return "\n".join(out) + "\n"
