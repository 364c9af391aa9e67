"""``GET /v1/schema/event``: the JSON Schema of the events ocr-relay delivers."""

from __future__ import annotations

from typing import Any

from litestar import get

from service.domain.schema import event_json_schema


@get("/v1/schema/event", tags=["schema"], summary="JSON Schema of delivered events")
async def event_schema() -> dict[str, Any]:
    """Generated from the same Structs that encode the events."""
    return event_json_schema()
