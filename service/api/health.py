"""Liveness, readiness (Redis reachable, workers heartbeating) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.exceptions import RedisError

from service import metrics
from service.api.deps import Services

_REDIS_TIMEOUT_S = 2.0


class Health(msgspec.Struct, frozen=True, omit_defaults=True):
    """A health answer: ``ok`` or why not."""

    status: str
    redis: str | None = None
    workers: str | None = None
    reason: str | None = None


@get("/health/live", tags=["health"], summary="The process is up")
async def health_live() -> Health:
    """Always 200 while the process serves requests."""
    return Health(status="ok")


@get("/health/ready", tags=["health"], summary="Redis is reachable")
async def health_ready(state: State) -> Response[Health]:
    """200 when Redis answers; 503 with the reason otherwise. Reports the worker heartbeat."""
    services: Services = state.services
    redis: Any = state.redis
    try:
        async with asyncio.timeout(_REDIS_TIMEOUT_S):
            await redis.ping()
            heartbeat = await redis.get(services.keys.health_check())
    except (RedisError, OSError, TimeoutError) as exc:
        reason = f"redis unreachable: {type(exc).__name__}: {exc}".split(" at ")[0]
        return Response(Health(status="unavailable", redis="down", reason=reason), status_code=503)
    workers = "heartbeat seen" if heartbeat else "no worker heartbeat in the last minute"
    return Response(Health(status="ok", redis="ok", workers=workers), status_code=200)


@get("/metrics", tags=["health"], summary="Prometheus metrics", media_type=CONTENT_TYPE_LATEST)
async def metrics_endpoint(state: State) -> Response[bytes]:
    """This process's metrics, plus watch counts by state for the whole deployment.

    Workers export their own (polls, deliveries, Monite requests) on ``WORKER_METRICS_PORT``.
    """
    services: Services = state.services
    cluster = CollectorRegistry(auto_describe=False)
    # The process's own metrics are still worth a scrape while Redis is away.
    with contextlib.suppress(RedisError, OSError):
        cluster.register(metrics.WatchCounts(await services.store.retention.state_counts()))
    body = generate_latest(metrics.REGISTRY) + generate_latest(cluster)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
