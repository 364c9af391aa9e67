"""The Litestar application: wiring only. Handlers live in one module per resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields
from importlib.resources import files
from typing import Any, Final

import msgspec
from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, OpenAPI, SecurityScheme
from litestar.static_files import create_static_files_router

from service import logs
from service.api.bodies import DocumentUploadForm, DocumentUrlIn
from service.api.deps import Services
from service.api.documents import document_controller
from service.api.errors import EXCEPTION_HANDLERS
from service.api.health import health_live, health_ready, metrics_endpoint
from service.api.push import monite_webhook
from service.api.rate_limit import ClientRateLimit, RateLimitMiddleware
from service.api.request_metrics import RequestTimer, count_response
from service.api.request_rules import JSON_BODY_LIMIT, check_request
from service.api.schema_doc import event_schema
from service.api.watches import EventController, WatchController
from service.callbacks.egress import CallbackPolicy
from service.callbacks.sealing import Sealer
from service.console.pages import console_router
from service.console.rendering import static_router, template_config
from service.monite import MoniteClient, build_monite_http
from service.operations import WatchService
from service.queue import Queue, connect
from service.settings import Settings
from service.storage import Store
from service.storage.keys import Keys

VERSION = "0.1.0"
BEARER: Final = "bearer"
SWAGGER_ASSETS: Final = "/schema/swagger-ui"

log = logging.getLogger("ocr_relay.api")


def create_app(settings: Settings) -> Litestar:
    """The API application for ``settings``; Redis and HTTP clients open in its lifespan."""
    keys = Keys(settings.key_prefix)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if not settings.api_keys:
            # Logged as an error: such an API is up and healthy yet refuses every client.
            log.error(
                "API_KEYS is empty: every /v1 request will be answered 401; set API_KEYS "
                "(`ocr-relay hash-key --client NAME` prints a key and its entry)"
            )
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

    console: list[Router] = []
    if settings.console_keys:
        console = [console_router(), static_router()]
    return Litestar(
        route_handlers=[
            *console,
            # Every /v1 route but Monite's push takes an API key: the schema says so per route.
            Router(
                path="/",
                route_handlers=[
                    WatchController,
                    EventController,
                    document_controller(settings.max_upload_bytes),
                ],
                security=[{BEARER: []}],
            ),
            create_static_files_router(
                path=SWAGGER_ASSETS, directories=[str(files("swagger_ui") / "static")]
            ),
            health_live,
            health_ready,
            metrics_endpoint,
            event_schema,
            monite_webhook,
        ],
        lifespan=[lifespan],
        template_config=template_config(VERSION) if console else None,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[RequestTimer(), RateLimitMiddleware()],
        before_send=[count_response],
        before_request=check_request,
        # Every route takes a JSON body at most; the upload route raises its own limit.
        request_max_body_size=JSON_BODY_LIMIT,
        openapi_config=_OpenAPIConfig(
            title="ocr-relay",
            version=VERSION,
            path="/schema",
            components=Components(
                security_schemes={
                    BEARER: SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key: Authorization: Bearer <key>",
                    )
                }
            ),
            # Assets from the swagger-ui-py package, not a CDN, so the UI works offline.
            render_plugins=[
                SwaggerRenderPlugin(
                    js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
                    css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
                    standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
                    favicon=f"<link rel='icon' href='{SWAGGER_ASSETS}/favicon-32x32.png'>",
                )
            ],
        ),
        logging_config=None,
        debug=False,
    )


class _OpenAPI(OpenAPI):
    """The schema Litestar generates, plus what it cannot see: ``POST /v1/documents`` parses its
    multipart or JSON body by hand, so its two request bodies are described here."""

    def to_schema(self) -> dict[str, Any]:
        """The schema as served, with the request bodies of ``POST /v1/documents``."""
        schema = super().to_schema()
        (form, url), components = msgspec.json.schema_components(
            (DocumentUploadForm, DocumentUrlIn), ref_template="#/components/schemas/{name}"
        )
        schema["paths"]["/v1/documents"]["post"]["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form},
                "application/json": {"schema": url},
            },
        }
        schema["components"]["schemas"].update(components)
        return schema


class _OpenAPIConfig(OpenAPIConfig):
    """Litestar's OpenAPI configuration, building a ``_OpenAPI``.

    Litestar builds the schema lazily, on its first request, and serves ``to_schema()``; patching
    there keeps the API's start-up (and every test's) free of a schema build.
    """

    def to_openapi_schema(self) -> OpenAPI:
        """The root of the schema Litestar fills in with paths and components."""
        base = super().to_openapi_schema()
        return _OpenAPI(**{f.name: getattr(base, f.name) for f in fields(base)})


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
