"""GET /metrics: the engine's counters (Model.stats()) and the server's own, in Prometheus text
format, written by prometheus_client from a collector that reads them at scrape time."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..model import Model

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServerCounters:
    """Requests answered, by route and status; and the generation requests admitted now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.responses: Counter[tuple[str, int]] = Counter()
        self.in_flight = 0

    def count(self, route: str, status: int) -> None:
        with self._lock:
            self.responses[(route, status)] += 1


class _Collector(Collector):
    def __init__(self, model: Model, counters: ServerCounters) -> None:
        self.model = model
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        s = self.model.stats()
        done = CounterMetricFamily(
            "pyrustml_http_requests",
            "HTTP requests answered, by route and status",
            labels=["route", "status"],
        )
        with self.counters._lock:
            answered = sorted(self.counters.responses.items())
        for (route, status), n in answered:
            done.add_metric([route, str(status)], n)
        yield done
        yield GaugeMetricFamily(
            "pyrustml_http_requests_in_flight",
            "generation requests admitted and not yet finished",
            value=self.counters.in_flight,
        )
        yield CounterMetricFamily(
            "pyrustml_requests", "generation requests the engine took", value=s.requests
        )
        yield CounterMetricFamily(
            "pyrustml_prompt_tokens", "prompt tokens of the requests taken", value=s.prompt_tokens
        )
        yield CounterMetricFamily("pyrustml_generated_tokens", "tokens generated", value=s.generated_tokens)
        yield CounterMetricFamily(
            "pyrustml_prefix_cache_hit_tokens",
            "prompt tokens reused from the prefix cache instead of prefilled",
            value=s.cached_tokens,
        )
        yield GaugeMetricFamily("pyrustml_active_sequences", "sequences being decoded", value=s.active)
        yield GaugeMetricFamily("pyrustml_queued_sequences", "requests waiting for a slot", value=s.queued)
        yield SummaryMetricFamily(
            "pyrustml_step_seconds",
            "engine steps (prefill chunks and decode steps) and their total time",
            count_value=s.steps,
            sum_value=s.step_seconds,
        )


def registry(model: Model, counters: ServerCounters) -> CollectorRegistry:
    """A registry of its own per app (not the process-wide default), so apps never share series."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(model, counters))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
