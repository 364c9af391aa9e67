"""The Litestar application: wiring only. Handlers live in one module per resource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from service import logs
from service.api.deps import Services
from service.api.documents import document_controller
from service.api.errors import EXCEPTION_HANDLERS
from service.api.health import health_live, health_ready, metrics_endpoint
from service.api.push import monite_webhook
from service.api.rate_limit import RateLimitMiddleware
from service.api.request_metrics import RequestTimer, count_response
from service.api.request_rules import JSON_BODY_LIMIT, check_request
from service.api.schema_doc import event_schema
from service.api.watches import EventController, WatchController
from service.egress import CallbackPolicy
from service.keys import Keys
from service.monite import MoniteClient, build_monite_http
from service.queue import Queue, connect
from service.ratelimit import ClientRateLimit
from service.sealing import Sealer
from service.settings import Settings
from service.store import Store
from service.watches import WatchService

VERSION = "0.1.0"


def create_app(settings: Settings) -> Litestar:
    """The API application for ``settings``; Redis and HTTP clients open in its lifespan."""
    keys = Keys(settings.key_prefix)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        redis = connect(settings)
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
        app.state.client_rate_limit = ClientRateLimit(
            redis, keys.api_rate(), settings.api_rate_limit_per_minute
        )
        try:
            yield
        finally:
            await http.aclose()
            await redis.aclose(close_connection_pool=True)

    return Litestar(
        route_handlers=[
            WatchController,
            EventController,
            document_controller(settings.max_upload_bytes),
            health_live,
            health_ready,
            metrics_endpoint,
            event_schema,
            monite_webhook,
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[RequestTimer(), RateLimitMiddleware()],
        before_send=[count_response],
        before_request=check_request,
        # Every route takes a JSON body at most; the upload route raises its own limit.
        request_max_body_size=JSON_BODY_LIMIT,
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
