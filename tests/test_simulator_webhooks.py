"""The simulator's ``ocr_task.finished`` webhooks: when they fire, their body and signature."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import httpx

from service.simulator import SimulatorControl
from service.simulator.webhooks import sign
from tests.conftest import Receiver

ENTITY = "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b"
SECRET = "whsec_test-secret"


def _verify(header: str, body: bytes) -> bool:
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


async def test_signature_is_hmac_of_timestamp_and_body() -> None:
    header = sign(SECRET, 1710139795, b'{"a":1}')
    assert header.startswith("t=1710139795,v1=")
    assert _verify(header, b'{"a":1}')


async def test_task_created_with_entity_header_sends_a_signed_finished_event(
    simulator: SimulatorControl, receiver: Receiver
) -> None:
    await simulator.configure(webhook_url=receiver.url, webhook_secret=SECRET)
    headers = simulator.headers(await simulator.token(), ENTITY)
    async with httpx.AsyncClient(base_url=simulator.base_url) as http:
        created = await http.post(
            "/ocr_tasks", json={"file_url": "https://files.example/a.pdf"}, headers=headers
        )
    (delivery,) = await receiver.wait_for(1)
    event = json.loads(delivery.body)
    assert _verify(delivery.headers["monite-signature"], delivery.body)
    assert event["action"] == "ocr_task.finished"
    assert event["object_type"] == "ocr_task"
    assert event["entity_id"] == ENTITY
    assert event["api_version"] == simulator.api_version
    assert event["object"] == {"id": created.json()["id"], "status": "success"}


async def test_task_created_without_entity_header_sends_no_event(
    simulator: SimulatorControl, receiver: Receiver
) -> None:
    await simulator.configure(webhook_url=receiver.url, webhook_secret=SECRET)
    token = await simulator.token()
    async with httpx.AsyncClient(base_url=simulator.base_url) as http:
        body = {"file_url": "https://files.example/a.pdf"}
        await http.post("/ocr_tasks", json=body, headers=simulator.headers(token))
        second = await http.post("/ocr_tasks", json=body, headers=simulator.headers(token, ENTITY))
    deliveries = await receiver.wait_for(1)
    assert [json.loads(d.body)["object"]["id"] for d in deliveries] == [second.json()["id"]]


async def test_forced_completion_sends_the_event_once(
    simulator: SimulatorControl, receiver: Receiver
) -> None:
    await simulator.configure(webhook_url=receiver.url, webhook_secret=SECRET)
    task = await simulator.create_task(entity_id=ENTITY, outcome="never")
    await simulator.complete(task.id, "error")
    await receiver.wait_for(1)
    await simulator.complete(task.id)
    # Events leave in the order they fall due, so the marker's comes after any repeat.
    marker = await simulator.create_task(entity_id=ENTITY)
    deliveries = await receiver.wait_for(2)
    objects = [json.loads(d.body)["object"] for d in deliveries]
    assert objects == [{"id": task.id, "status": "error"}, {"id": marker.id, "status": "success"}]


async def test_failed_delivery_is_retried(simulator: SimulatorControl, receiver: Receiver) -> None:
    await simulator.configure(webhook_url=receiver.url, webhook_secret=SECRET)
    receiver.script([503])
    await simulator.create_task(entity_id=ENTITY)
    first, second = await receiver.wait_for(2)
    assert first.body == second.body
    # The receiver sees the request before the simulator sees the answer: wait for the count.
    for _ in range(250):
        counters = (await simulator.counters()).webhooks
        if counters.delivered:
            break
        await asyncio.sleep(0.02)
    assert (counters.delivered, counters.failed) == (1, 0)
