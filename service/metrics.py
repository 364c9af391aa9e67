"""Every Prometheus metric of the service, defined in one flat module on one registry.

Labels carry only bounded, non-secret values (endpoint names, status codes, priorities): never
tokens, ids of tasks or watches, or URLs.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY: Final = CollectorRegistry()

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
MONITE_BATCH_SIZE: Final = Histogram(
    "ocr_relay_monite_batch_size",
    "Task ids asked for in one GET /ocr_tasks?id__in=... request.",
    buckets=(1, 2, 5, 10, 20, 50, 100),
    registry=REGISTRY,
)
