"""The mission, end to end: register → poll the simulator → normalize → signed callback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from arq.worker import Worker
from litestar.testing import AsyncTestClient

from service.domain.signing import verify_signature
from service.simulator import SimulatorControl
from tests.conftest import Receiver, auth

ENTITY = "9d3c1b2a-1111-4a2b-8c3d-4e5f6a7b8c9d"
Client = AsyncTestClient[Any]


async def register(api: Client, task_id: str, callback_url: str, **extra: Any) -> dict[str, Any]:
    payload = {"task_id": task_id, "callback_url": callback_url, "entity_id": ENTITY, **extra}
    answer = await api.post("/v1/watches", json=payload, headers=auth())
    assert answer.status_code == 201, answer.text
    watch: dict[str, Any] = answer.json()
    return watch


async def settled(api: Client, watch_id: str, within_s: float = 15.0) -> dict[str, Any]:
    """The watch once it is delivered, failed or cancelled."""
    deadline = time.monotonic() + within_s
    while True:
        watch: dict[str, Any] = (await api.get(f"/v1/watches/{watch_id}", headers=auth())).json()
        if watch["state"] in ("delivered", "failed", "cancelled"):
            return watch
        if time.monotonic() > deadline:
            raise AssertionError(f"watch still {watch['state']}: {watch}")
        await asyncio.sleep(0.05)


async def test_a_recognized_invoice_reaches_the_callback_signed(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, document_type="invoice")
    watch = await register(e2e_api, task.id, receiver.url, metadata={"erp_ref": "PO-4711"})
    done = await settled(e2e_api, watch["id"])
    assert done["state"] == "delivered"
    assert done["event_type"] == "invoice.recognized"
    [request] = await receiver.wait_for(1)
    verify_signature(watch["secret"], request.headers, request.body)
    event = msgspec.json.decode(request.body)
    assert event["type"] == "invoice.recognized"
    assert event["data"]["watch_id"] == watch["id"]
    assert event["data"]["metadata"] == {"erp_ref": "PO-4711"}
    assert event["data"]["document"]["kind"] == "invoice"
    assert request.headers["webhook-id"] == done["event_id"]
    stored = await e2e_api.get(f"/v1/events/{done['event_id']}", headers=auth())
    assert stored.content == request.body
