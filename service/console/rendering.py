"""How console pages are rendered: the Jinja environment, its filters, the static assets.

Autoescape is on for every template, so a value from a client (metadata, document fields,
callback URLs) can only ever reach a page as escaped text. Undefined names render empty: a
document of one kind lacks fields another has, and a page must show what there is. Assets are
served by the app itself, fingerprinted by content so they can be cached for a year.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Final

import jinja2
from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from service.console.charts import NO_VALUE, format_ms, format_number

_HERE: Final = Path(str(files("service.console")))
STATIC_PATH: Final = "/console/static"
ERROR_HEADINGS: Final = {
    400: "That request is not right",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Not possible now",
    500: "Something went wrong",
    503: "Unavailable",
}


def _asset_version(name: str) -> str:
    return hashlib.sha256((_HERE / "static" / name).read_bytes()).hexdigest()[:12]


def _when(moment: datetime | None) -> str:
    """A moment as the console prints it: UTC, to the second."""
    if moment is None:
        return NO_VALUE
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def environment(version: str) -> jinja2.Environment:
    """The console's Jinja environment (``version`` is shown in the footer)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    versions = {name: _asset_version(name) for name in ("console.css",)}
    env.filters.update(n=format_number, ms=format_ms, dt=_when)
    env.globals.update(
        version=version,
        static=lambda name: f"{STATIC_PATH}/{name}?v={versions[name]}",
        notice=None,
        page="",
        title="",
    )
    return env


def template_config(version: str) -> TemplateConfig[JinjaTemplateEngine]:
    """Litestar's template configuration for the console's pages."""
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment(version)))


def static_router() -> Router:
    """The console's stylesheet, cacheable: its URL changes with its content."""
    return create_static_files_router(
        path=STATIC_PATH,
        directories=[_HERE / "static"],
        cache_control=CacheControlHeader(max_age=31_536_000, public=True),
        include_in_schema=False,
    )
