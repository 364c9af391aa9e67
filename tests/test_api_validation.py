"""Bad input gets a problem+json naming the field, never a 500, and stores nothing."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import auth
from tests.test_api_watches import body

Client = AsyncTestClient[Any]


async def problem(api: Client, payload: Any, status: int | tuple[int, ...] = (400, 422)) -> str:
    answer = await api.post("/v1/watches", json=payload, headers=auth())
    expected = (status,) if isinstance(status, int) else status
    assert answer.status_code in expected, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    doc = answer.json()
    assert doc["status"] == answer.status_code
    assert doc["title"]
    fields: list[str] = [e["field"] for e in doc["errors"]]
    return ",".join(fields)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(task_id="not-a-uuid"), "task_id"),
        (body(entity_id="123"), "entity_id"),
        (body(callback_url="ftp://example.com/x"), "callback_url"),
        (body(callback_url="http://user:pw@127.0.0.1/x"), "callback_url"),
        (body(deadline_s=0), "deadline_s"),
        (body(deadline_s=7 * 86400 + 1), "deadline_s"),
        (body(metadata={"blob": "x" * 5000}), "metadata"),
        (body(metadata=["not", "an", "object"]), "metadata"),
        (body(secret="plain"), "secret"),
        (body(surprise=1), "surprise"),
        ({"callback_url": "http://127.0.0.1/x"}, "task_id"),
    ],
)
async def test_invalid_registration_names_the_field(api: Client, payload: Any, field: str) -> None:
    assert field in await problem(api, payload)


async def test_a_body_that_is_not_json_is_a_400(api: Client) -> None:
    answer = await api.post(
        "/v1/watches",
        content=b"{nope",
        headers={**auth(), "content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_a_refused_registration_stores_nothing(api: Client) -> None:
    await problem(api, body(callback_url="http://169.254.169.254/latest"))
    listed = await api.get("/v1/watches", headers=auth())
    assert listed.json()["items"] == []


async def test_an_invalid_cursor_is_a_422(api: Client) -> None:
    answer = await api.get("/v1/watches", params={"cursor": "garbage"}, headers=auth())
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "cursor"


async def test_an_unknown_state_filter_is_a_400(api: Client) -> None:
    answer = await api.get("/v1/watches", params={"state": "sleeping"}, headers=auth())
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "state"
