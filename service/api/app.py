"""The Litestar application: wiring only. Handlers live in one module per resource."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis

from service import logs
from service.api.deps import Services
from service.api.documents import DocumentController
from service.api.errors import EXCEPTION_HANDLERS
from service.api.health import health_live, health_ready, metrics_endpoint
from service.api.push import monite_webhook
from service.api.schema_doc import event_schema
from service.api.watches import EventController, WatchController
from service.egress import CallbackPolicy
from service.keys import Keys
from service.monite import MoniteClient, build_monite_http
from service.queue import Queue, connect
from service.sealing import Sealer
from service.settings import Settings
from service.store import Store
from service.watches import WatchService

VERSION = "0.1.0"


def _client_identifier(request: Request[Any, Any, Any]) -> str:
    """Rate-limit per API key (hashed: the key itself is never a store key), else per address."""
    header = request.headers.get("authorization", "")
    if header:
        return "key:" + hashlib.sha256(header.encode()).hexdigest()[:24]
    return "addr:" + (request.client.host if request.client else "unknown")


def create_app(settings: Settings) -> Litestar:
    """The API application for ``settings``; Redis and HTTP clients open in its lifespan."""
    keys = Keys(settings.key_prefix)
    rate_limit_redis = Redis.from_url(settings.redis_url)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        redis = connect(settings.redis_url, keys)
        http = build_monite_http(settings)
        store = Store(redis, keys, settings.watch_retention_s)
        queue = Queue(redis, keys)
        app.state.services = Services(
            settings=settings,
            keys=keys,
            store=store,
            queue=queue,
            watches=WatchService(store, queue, Sealer.from_settings(settings)),
            monite=MoniteClient(settings, redis, http, keys),
            policy=CallbackPolicy.from_settings(settings),
        )
        app.state.redis = redis
        try:
            yield
        finally:
            await http.aclose()
            await redis.aclose(close_connection_pool=True)
            await rate_limit_redis.aclose()

    rate_limit = RateLimitConfig(
        rate_limit=("minute", settings.api_rate_limit_per_minute),
        # Monite's pushes come from one address in bursts of its own making (a thousand OCR
        # results a minute would be refused at the default limit); their signature guards them.
        exclude=["/health", "/metrics", "/schema", "/v1/monite/webhooks"],
        identifier_for_request=_client_identifier,
        store="api_rate_limit",
    )
    return Litestar(
        route_handlers=[
            WatchController,
            EventController,
            DocumentController,
            health_live,
            health_ready,
            metrics_endpoint,
            event_schema,
            monite_webhook,
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[rate_limit.middleware],
        stores={
            "api_rate_limit": RedisStore(rate_limit_redis, namespace=keys.api_rate().rstrip(":"))
        },
        request_max_body_size=settings.max_upload_bytes + 64 * 1024,
        openapi_config=OpenAPIConfig(
            title="ocr-relay",
            version=VERSION,
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        logging_config=None,
        debug=False,
    )


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Run the API under uvicorn until interrupted."""
    import uvicorn

    logs.configure(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
