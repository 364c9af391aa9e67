"""``GET /v1/ocr_tasks`` on the simulator: ``id__in``, filters, ordering, pagination tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.simulator import SimulatorControl

ENTITY = "3a2b1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d"


class Lister:
    """Lists the test entity's tasks."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.http = http
        self.headers = headers

    async def page(self, params: Any) -> dict[str, Any]:
        response = await self.http.get("/ocr_tasks", params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def status(self, params: Any) -> int:
        response = await self.http.get("/ocr_tasks", params=params, headers=self.headers)
        return response.status_code


@pytest.fixture
async def lister(simulator: SimulatorControl) -> AsyncIterator[Lister]:
    """A lister with a partner token acting for ``ENTITY``."""
    headers = simulator.headers(await simulator.token(), ENTITY)
    async with httpx.AsyncClient(base_url=simulator.base_url) as http:
        yield Lister(http, headers)


async def _create(simulator: SimulatorControl, count: int, **spec: Any) -> list[str]:
    return [(await simulator.create_task(entity_id=ENTITY, **spec)).id for _ in range(count)]


def _ids(page: dict[str, Any]) -> list[str]:
    return [t["id"] for t in page["data"]]


async def test_id_in_returns_only_the_named_tasks(
    simulator: SimulatorControl, lister: Lister
) -> None:
    ids = await _create(simulator, 5)
    wanted = [ids[3], ids[1], str(uuid.uuid4())]
    page = await lister.page([("id__in", i) for i in wanted])
    assert sorted(_ids(page)) == sorted(ids[i] for i in (1, 3))


async def test_id_in_with_a_malformed_id_is_422(lister: Lister) -> None:
    assert await lister.status({"id__in": "nope"}) == 422


async def test_pages_cover_every_task_once_in_order(
    simulator: SimulatorControl, lister: Lister
) -> None:
    ids = await _create(simulator, 7)
    seen: list[str] = []
    page = await lister.page({"limit": 3})
    while True:
        seen += _ids(page)
        if page["next_pagination_token"] is None:
            break
        page = await lister.page({"pagination_token": page["next_pagination_token"]})
    assert seen == ids


async def test_prev_token_returns_the_previous_page(
    simulator: SimulatorControl, lister: Lister
) -> None:
    await _create(simulator, 5)
    first = await lister.page({"limit": 2})
    second = await lister.page({"pagination_token": first["next_pagination_token"]})
    back = await lister.page({"pagination_token": second["prev_pagination_token"]})
    assert first["prev_pagination_token"] is None
    assert _ids(back) == _ids(first)


async def test_pagination_token_carries_the_original_query(
    simulator: SimulatorControl, lister: Lister
) -> None:
    await _create(simulator, 3, document_type="receipt")
    await _create(simulator, 3, document_type="invoice")
    first = await lister.page({"limit": 2, "document_type": "receipt"})
    rest = await lister.page(
        {
            "pagination_token": first["next_pagination_token"],
            "document_type": "invoice",
            "limit": 50,
        }
    )
    assert [t["document_type"] for t in rest["data"]] == ["receipt"]
    assert rest["next_pagination_token"] is None


async def test_desc_order_lists_newest_first(simulator: SimulatorControl, lister: Lister) -> None:
    ids = await _create(simulator, 4)
    assert _ids(await lister.page({"order": "desc"})) == ids[::-1]


async def test_sort_by_id_orders_by_id(simulator: SimulatorControl, lister: Lister) -> None:
    ids = await _create(simulator, 6)
    assert _ids(await lister.page({"sort": "id"})) == sorted(ids)


async def test_status_filter_keeps_matching_tasks(
    simulator: SimulatorControl, lister: Lister
) -> None:
    failed = await _create(simulator, 2, outcome="error")
    await _create(simulator, 2, outcome="never")
    assert _ids(await lister.page({"status": "error"})) == failed


async def test_created_at_filters_bound_the_range(
    simulator: SimulatorControl, lister: Lister
) -> None:
    ids = await _create(simulator, 3)
    middle = (await lister.page({"id__in": ids[1]}))["data"][0]["created_at"]
    assert _ids(await lister.page({"created_at__gte": middle})) == ids[1:]
    assert _ids(await lister.page({"created_at__lt": middle})) == ids[:1]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"order": "sideways"},
        {"status": "canceled"},
        {"created_at__gt": "yesterday"},
        {"pagination_token": "garbage!"},
    ],
)
async def test_invalid_query_is_422(lister: Lister, params: dict[str, str]) -> None:
    assert await lister.status(params) == 422
