"""Hostile Monite payloads end as an ``invalid_payload`` failure event, never a stuck watch.

The simulator serves ``recognized_data`` verbatim, so each test makes Monite answer something huge,
deeply nested or of the wrong types, and follows the watch to its end through the real worker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from arq.worker import Worker
from litestar.testing import AsyncTestClient

from service.simulator import SimulatorControl
from tests.conftest import Receiver, auth

ENTITY = "9d3c1b2a-1111-4a2b-8c3d-4e5f6a7b8c9d"
Client = AsyncTestClient[Any]

HOSTILE: dict[str, Any] = {
    "100k line items": {"type": "invoice", "line_items": [{"name": "x"}] * 100_000},
    "a 9 MB body": {"type": "invoice", "payment_terms": "B" * 9_000_000},
    "text for an amount": {"type": "invoice", "total_amount": "a lot"},
    "an object for an amount": {"type": "invoice", "subtotal": {"value": 1}},
    "a number for a name": {"type": "invoice", "sender": {"name": 42}},
    "a string for line items": {"type": "invoice", "line_items": "none"},
    "a list for a line item": {"type": "invoice", "line_items": [[1, 2]]},
    "a list as recognized data": [1, 2, 3],
    "a string as recognized data": "invoice",
    "an unknown document type": {"type": "purchase_order"},
}


async def settled(api: Client, watch_id: str, within_s: float = 30.0) -> dict[str, Any]:
    """The watch once it is delivered, failed or cancelled."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        watch: dict[str, Any] = (await api.get(f"/v1/watches/{watch_id}", headers=auth())).json()
        if watch["state"] in ("delivered", "failed", "cancelled"):
            return watch
        await asyncio.sleep(0.05)
    raise AssertionError(f"watch {watch_id} is stuck")


async def register(api: Client, task_id: str, callback_url: str) -> str:
    """Register a watch of ``task_id``; its id."""
    body = {"task_id": task_id, "callback_url": callback_url, "entity_id": ENTITY}
    answer = await api.post("/v1/watches", json=body, headers=auth())
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def assert_invalid_payload_event(
    api: Client, watch_id: str, receiver: Receiver, within_s: float = 30.0
) -> None:
    """The watch failed with ``invalid_payload`` and its callback got that ``ocr.failed`` event."""
    watch = await settled(api, watch_id, within_s)
    assert (watch["state"], watch["failure"]["code"]) == ("failed", "invalid_payload")
    events = [msgspec.json.decode(r.body) for r in await receiver.wait_for(1)]
    [event] = [e for e in events if e["data"]["watch_id"] == watch_id]
    assert event["type"] == "ocr.failed"
    assert event["data"]["error"]["code"] == "invalid_payload"
    assert len(event["data"]["error"]["message"]) < 2000


@pytest.mark.parametrize("recognized_data", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_hostile_payload_ends_as_an_invalid_payload_event(
    e2e_api: Client,
    worker: Worker,
    simulator: SimulatorControl,
    receiver: Receiver,
    recognized_data: Any,
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, recognized_data=recognized_data)
    watch_id = await register(e2e_api, task.id, receiver.url)
    await assert_invalid_payload_event(e2e_api, watch_id, receiver)


def nested(depth: int) -> str:
    """An invoice whose sender is ``depth`` nested arrays, as JSON text (too deep to encode)."""
    return '{"type":"invoice","sender":' + "[" * depth + "]" * depth + "}"


async def nested_task(simulator: SimulatorControl, depth: int, duration_s: float = 0.2) -> str:
    """A task that finishes with a ``depth``-deep payload; its id."""
    # Still processing when created, so the simulator's answer does not echo a payload that the
    # control client could not decode either.
    task = await simulator.create_task(
        entity_id=ENTITY, recognized_data_text=nested(depth), duration_s=duration_s
    )
    return task.id


async def test_a_3_mb_string_ends_as_an_invalid_payload_event(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    huge = {"type": "invoice", "document_number": "A" * 3_000_000}
    task = await simulator.create_task(entity_id=ENTITY, recognized_data=huge)
    watch_id = await register(e2e_api, task.id, receiver.url)
    await assert_invalid_payload_event(e2e_api, watch_id, receiver, within_s=8.0)


@pytest.mark.parametrize("depth", [200, 5_000, 100_000])
async def test_a_deeply_nested_payload_ends_as_an_invalid_payload_event(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver, depth: int
) -> None:
    watch_id = await register(e2e_api, await nested_task(simulator, depth), receiver.url)
    await assert_invalid_payload_event(e2e_api, watch_id, receiver)


async def test_hostile_tasks_polled_in_one_batch_do_not_harm_their_neighbours(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    # Tasks of one entity are polled together, through Monite's list endpoint; they finish after
    # the first polls, so that they finish in one batch.
    later = 0.6
    hostile = [await nested_task(simulator, 100_000, later)] + [
        (
            await simulator.create_task(
                entity_id=ENTITY, recognized_data=HOSTILE[name], duration_s=later
            )
        ).id
        for name in ("100k line items", "text for an amount", "a list as recognized data")
    ]
    healthy = [
        (await simulator.create_task(entity_id=ENTITY, duration_s=later)).id for _ in range(3)
    ]
    ids = {task: await register(e2e_api, task, receiver.url) for task in [*hostile, *healthy]}
    for task in hostile:
        assert (await settled(e2e_api, ids[task]))["failure"]["code"] == "invalid_payload"
    for task in healthy:
        assert (await settled(e2e_api, ids[task]))["state"] == "delivered"
