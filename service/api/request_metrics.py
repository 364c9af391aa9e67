"""Per-route counts and latencies of the API's answers, for Prometheus.

Counted where every answer passes, a ``before_send`` hook of the app: the 429s of the rate limiter
and the 503s of a Redis outage count like any handler's answer. Labels stay bounded: the route is
its path template (``/v1/watches/{watch_id}``, never an id), an unknown path is
``unmatched``, and an unusual method is ``OTHER``.
"""

from __future__ import annotations

import time
from typing import Final

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics

_STARTED: Final = "ocr_relay_started"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestTimer(ASGIMiddleware):
    """Notes when a routed request entered the middleware stack (list it first: outermost)."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Stamp the start time in the request's state, then go on."""
        scope["state"][_STARTED] = time.perf_counter()
        await next_app(scope, receive, send)


async def count_response(message: Message, scope: Scope) -> None:
    """Count an answer by route, method and status as its start is sent; observe its latency."""
    if message["type"] != "http.response.start" or scope["type"] != ScopeType.HTTP:
        return
    route = scope.get("path_template") or "unmatched"
    method = scope["method"] if scope["method"] in _METHODS else "OTHER"
    metrics.API_REQUESTS.labels(route, method, str(message["status"])).inc()
    started = scope["state"].get(_STARTED)
    if started is not None:  # unknown paths never reach the middleware stack
        metrics.API_REQUEST_DURATION.labels(route).observe(time.perf_counter() - started)
