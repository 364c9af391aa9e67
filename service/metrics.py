"""Every Prometheus metric of the service, defined in one flat module on one registry.

Labels carry only bounded, non-secret values (endpoint names, status codes, priorities): never
tokens, ids of tasks or watches, or URLs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY: Final = CollectorRegistry()

# -- API (per process) -------------------------------------------------------------------------
API_REQUESTS: Final = Counter(
    "ocr_relay_api_requests",
    "API answers by route (path template), method and HTTP status.",
    ("route", "method", "status"),
    registry=REGISTRY,
)
API_REQUEST_DURATION: Final = Histogram(
    "ocr_relay_api_request_duration_seconds",
    "Time from a request entering the API's middleware to its answer starting, by route.",
    ("route",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)

# -- Monite ------------------------------------------------------------------------------------
MONITE_REQUESTS: Final = Counter(
    "ocr_relay_monite_requests",
    "Requests sent to Monite, by endpoint and HTTP status (or 'network' / 'timeout').",
    ("endpoint", "status"),
    registry=REGISTRY,
)
MONITE_RATE_LIMITED: Final = Counter(
    "ocr_relay_monite_rate_limited",
    "429 Too Many Requests answers from Monite.",
    registry=REGISTRY,
)
MONITE_TOKEN_FETCHES: Final = Counter(
    "ocr_relay_monite_token_fetches",
    "Access tokens requested from Monite's /auth/token, by outcome.",
    ("outcome",),
    registry=REGISTRY,
)
MONITE_LIMITER_WAIT: Final = Histogram(
    "ocr_relay_monite_limiter_wait_seconds",
    "Time spent waiting for a slot of the shared Monite rate budget.",
    ("priority",),
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
MONITE_PUSHES: Final = Counter(
    "ocr_relay_monite_pushes",
    "Monite pushes with a valid signature, by the secret form that signed them (text: the "
    "whsec_ text itself, base64: the bytes it encodes) and where the task id was (object.id, "
    "object_id, none, or unreadable).",
    ("signature_key", "task_id_field"),
    registry=REGISTRY,
)
MONITE_BATCH_SIZE: Final = Histogram(
    "ocr_relay_monite_batch_size",
    "Task ids asked for in one GET /ocr_tasks?id__in=... request.",
    buckets=(1, 2, 5, 10, 20, 50, 100),
    registry=REGISTRY,
)

# -- polling and delivery (in the worker that did them) ----------------------------------------
POLLS: Final = Counter(
    "ocr_relay_polls",
    "Watches polled, by what the poll found: processing, success, error, not_found, "
    "rate_limited, unavailable, unauthorized, invalid_payload, deadline.",
    ("result",),
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS: Final = Counter(
    "ocr_relay_delivery_attempts",
    "Callback delivery attempts by outcome: delivered, retry, gone, rejected, refused.",
    ("outcome",),
    registry=REGISTRY,
)
DELIVERY_LATENCY: Final = Histogram(
    "ocr_relay_delivery_latency_seconds",
    "Time from sending an event to the callback's answer (or the error).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
EVENT_LAG: Final = Histogram(
    "ocr_relay_event_lag_seconds",
    "Time from Monite finishing a task (its updated_at) to ocr-relay storing the event.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
WORKER_RESTARTS: Final = Counter(
    "ocr_relay_worker_restarts",
    "Workers closed and started again because Redis was out of reach.",
    registry=REGISTRY,
)


class WatchCounts(Collector):
    """Cluster-wide watch counts and reconciler findings, read from Redis by the API just before
    each scrape (the store's ``stats`` hash)."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        """``ocr_relay_watches{state}`` now, ``ocr_relay_watch_states_entered_total{state}``,
        ``ocr_relay_reconciled_total{step}`` and ``ocr_relay_oldest_overdue_step_seconds{step}``."""
        current = GaugeMetricFamily(
            "ocr_relay_watches",
            "Watches in each state now, retained finished ones included (all processes).",
            labels=["state"],
        )
        entered = CounterMetricFamily(
            "ocr_relay_watch_states_entered",
            "Times a watch entered each state (all processes).",
            labels=["state"],
        )
        reconciled = CounterMetricFamily(
            "ocr_relay_reconciled",
            "Overdue next steps (poll, delivery) the reconciler sent on: each one a lost job.",
            labels=["step"],
        )
        overdue = GaugeMetricFamily(
            "ocr_relay_oldest_overdue_step_seconds",
            "How overdue the oldest next step of each kind was at the last reconcile run.",
            labels=["step"],
        )
        families: dict[str, tuple[GaugeMetricFamily | CounterMetricFamily, float]] = {
            "current": (current, 1.0),
            "entered": (entered, 1.0),
            "reconciled": (reconciled, 1.0),
            "overdue_ms": (overdue, 0.001),
        }
        for key, value in sorted(self._counts.items()):
            kind, _, label = key.partition(":")
            if kind in families:
                family, scale = families[kind]
                family.add_metric([label], value * scale)
        yield current
        yield entered
        yield reconciled
        yield overdue
