"""The published OpenAPI schema and Swagger UI: usable as a newcomer meets them, offline."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

Spec = dict[str, Any]
AUTHENTICATED_PREFIXES = ("/v1/watches", "/v1/events", "/v1/documents")


@pytest.fixture
async def spec(api: AsyncTestClient[Any]) -> Spec:
    answer = await api.get("/schema/openapi.json")
    assert answer.status_code == 200
    found: Spec = answer.json()
    return found


@pytest.fixture
async def api_spec_text(api: AsyncTestClient[Any]) -> str:
    return (await api.get("/schema/openapi.json")).text


def _operations(spec: Spec) -> list[tuple[str, dict[str, Any]]]:
    return [(path, op) for path, item in spec["paths"].items() for op in item.values()]


def test_an_api_key_is_declared_as_a_bearer_scheme(spec: Spec) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert [(s["type"], s["scheme"]) for s in schemes.values()] == [("http", "bearer")]


def test_every_route_that_takes_an_api_key_requires_the_bearer_scheme(spec: Spec) -> None:
    [scheme] = spec["components"]["securitySchemes"]
    for path, operation in _operations(spec):
        wanted = [{scheme: []}] if path.startswith(AUTHENTICATED_PREFIXES) else None
        assert operation.get("security") == wanted, path


def test_document_upload_describes_its_multipart_and_json_bodies(spec: Spec) -> None:
    content = spec["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    schemas = spec["components"]["schemas"]
    form = schemas[content["multipart/form-data"]["schema"]["$ref"].rpartition("/")[2]]
    url = schemas[content["application/json"]["schema"]["$ref"].rpartition("/")[2]]
    assert form["properties"]["file"]["format"] == "binary"
    assert set(form["required"]) == {"file", "callback_url"}
    assert set(url["required"]) == {"file_url", "callback_url"}


def test_an_event_is_documented_as_the_event_object(spec: Spec) -> None:
    ok = spec["paths"]["/v1/events/{event_id}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Event"}


def test_the_spec_cites_no_document_outside_it(api_spec_text: str) -> None:
    assert "DESIGN" not in api_spec_text
    assert "§" not in api_spec_text


@pytest.mark.parametrize("body", ["WatchIn", "DocumentUrlIn", "DocumentUploadForm"])
def test_the_metadata_limit_and_include_raw_are_described(spec: Spec, body: str) -> None:
    fields = spec["components"]["schemas"][body]["properties"]
    assert "4 KiB" in str(fields["metadata"])
    assert "recognized_data" in fields["include_raw"]["description"]


async def test_swagger_ui_loads_every_asset_from_the_api_itself(
    api: AsyncTestClient[Any],
) -> None:
    page = await api.get("/schema/swagger")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert len(assets) >= 3
    for asset in assets:
        assert asset.startswith("/"), asset
        assert (await api.get(asset)).status_code == 200, asset
