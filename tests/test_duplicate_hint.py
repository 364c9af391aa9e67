"""The duplicate hint end to end: the same client's second identical invoice points at the first;
another client's identical invoice is nobody's duplicate (never across tenants)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from arq.worker import Worker
from litestar.testing import AsyncTestClient

from service.simulator import SimulatorControl
from service.storage import Store
from tests.conftest import Receiver, auth
from tests.test_end_to_end import ENTITY, invoice_de_task

Client = AsyncTestClient[Any]


async def delivered_event(
    api: Client, client: str, task_id: str, receiver: Receiver
) -> dict[str, Any]:
    """Register ``client``'s watch of ``task_id``; the event its callback received, with its
    ``webhook-id`` as ``id``."""
    payload = {"task_id": task_id, "callback_url": receiver.url, "entity_id": ENTITY}
    answer = await api.post("/v1/watches", json=payload, headers=auth(client))
    assert answer.status_code == 201, answer.text
    watch_id = answer.json()["id"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for request in receiver.requests:
            event: dict[str, Any] = msgspec.json.decode(request.body)
            if event["data"]["watch_id"] == watch_id:
                return {**event, "id": request.headers["webhook-id"]}
        await asyncio.sleep(0.05)
    raise AssertionError(f"no event for {watch_id}")


def duplicate_warnings(event: dict[str, Any]) -> list[dict[str, Any]]:
    warnings: list[dict[str, Any]] = event["data"]["document"]["warnings"]
    return [w for w in warnings if w["code"] == "possible_duplicate"]


async def test_a_second_identical_invoice_points_at_the_first_and_another_clients_does_not(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    first, second, other = [await invoice_de_task(simulator) for _ in range(3)]
    original = await delivered_event(e2e_api, "alpha", first.id, receiver)
    again = await delivered_event(e2e_api, "alpha", second.id, receiver)
    elsewhere = await delivered_event(e2e_api, "beta", other.id, receiver)
    assert duplicate_warnings(original) == []
    [warning] = duplicate_warnings(again)
    assert warning["related"] == {
        "watch_id": original["data"]["watch_id"],
        "event_id": original["id"],
    }
    assert duplicate_warnings(elsewhere) == []


async def test_the_first_document_of_a_fingerprint_is_kept_for_the_retention_per_client(
    store: Store,
) -> None:
    assert await store.duplicates.first_of("alpha", "fp", "wat_1", "evt_1") is None
    assert await store.duplicates.first_of("alpha", "fp", "wat_2", "evt_2") == ("wat_1", "evt_1")
    assert await store.duplicates.first_of("beta", "fp", "wat_3", "evt_3") is None
    ttl = await store.redis.ttl(store.keys.duplicate("alpha", "fp"))
    assert 0 < ttl <= store.duplicates.retention_s
