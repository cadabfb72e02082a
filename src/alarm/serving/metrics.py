"""Server metrics in the Prometheus text format (``GET /metrics``), without a client library.

Counters, gauges read at scrape time, and cumulative histograms: the few types the server
needs, thread-safe (the model thread and the request handlers both record).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for bound, n in zip(self.buckets, self.counts):
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {n}')
        lines += [f'{self.name}_bucket{{le="+Inf"}} {self.count}', f"{self.name}_sum {self.total:g}"]
        return [*lines, f"{self.name}_count {self.count}"]


class ServerMetrics:
    """What ``/metrics`` reports. ``gauges`` are read when scraped (queue depth, in flight)."""

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]] | None = None) -> None:
        self._lock = threading.Lock()
        self.gauges = dict(gauges or {})
        self.requests: dict[str, int] = {}
        self.completion_tokens = 0
        self.batch_size = Histogram("alarm_batch_size", "Requests per batch the engine ran.", BATCH_BUCKETS)
        self.ttft = Histogram(
            "alarm_time_to_first_token_seconds", "From request to its first generated token.", LATENCY_BUCKETS
        )
        self.latency = Histogram("alarm_request_duration_seconds", "From request to its last token.", LATENCY_BUCKETS)
        self.tokens_per_s = Histogram(
            "alarm_request_tokens_per_second", "Generated tokens per second of a request's decoding.", RATE_BUCKETS
        )

    def request(self, status: int) -> None:
        with self._lock:
            self.requests[str(status)] = self.requests.get(str(status), 0) + 1

    def batch(self, size: int) -> None:
        with self._lock:
            self.batch_size.observe(size)

    def answered(self, *, ttft: float | None, latency: float, tokens: int) -> None:
        """A finished generation: time to first token, total time and tokens generated."""
        with self._lock:
            self.latency.observe(latency)
            self.completion_tokens += tokens
            if ttft is not None:
                self.ttft.observe(ttft)
                if latency > ttft and tokens > 1:
                    self.tokens_per_s.observe((tokens - 1) / (latency - ttft))

    def render(self) -> str:
        """The Prometheus text exposition (version 0.0.4)."""
        with self._lock:
            lines = ["# HELP alarm_requests_total Chat-completion requests by HTTP status.",
                     "# TYPE alarm_requests_total counter"]  # fmt: skip
            lines += [f"alarm_requests_total{_labels({'status': s})} {n}" for s, n in sorted(self.requests.items())]
            lines += ["# HELP alarm_completion_tokens_total Tokens generated.",
                      "# TYPE alarm_completion_tokens_total counter",
                      f"alarm_completion_tokens_total {self.completion_tokens}"]  # fmt: skip
            for name, (help_text, read) in self.gauges.items():
                value = float(read())
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                          f"{name} {value:g}" if math.isfinite(value) else f"{name} NaN"]  # fmt: skip
            for histogram in (self.batch_size, self.ttft, self.latency, self.tokens_per_s):
                lines += histogram.render()
        return "\n".join(lines) + "\n"
