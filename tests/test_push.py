"""Monite's ``ocr_task.finished`` push makes a watch poll at once; forged or replayed ones don't."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.settings import Settings
from service.simulator import SimulatorControl
from tests.conftest import Receiver, auth
from tests.test_end_to_end import ENTITY, register, settled

SECRET = "whsec_monite-push-test-secret"
Client = AsyncTestClient[Any]


def push_body(task_id: str, event_id: str | None = None) -> bytes:
    return msgspec.json.encode(
        {
            "id": event_id or str(uuid.uuid4()),
            "created_at": "2026-11-25T10:00:00Z",
            "action": "ocr_task.finished",
            "api_version": "2024-05-25",
            "description": "OCR task finished",
            "entity_id": ENTITY,
            "object": {"id": task_id},
            "object_type": "ocr_task",
            "webhook_subscription_id": str(uuid.uuid4()),
        }
    )


def signed(body: bytes, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    t = str(at if at is not None else int(time.time()))
    v1 = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Monite-Signature": f"t={t},v1={v1}", "content-type": "application/json"}


async def first_poll_done(api: Client, watch_id: str) -> None:
    """Wait for the first poll (task still processing), so the next one is 30 s away."""
    for _ in range(100):
        watch = (await api.get(f"/v1/watches/{watch_id}", headers=auth())).json()
        if watch["polls"] >= 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the first poll never happened")


@pytest.fixture
def push_settings(e2e_settings: Settings) -> Settings:
    """Slow polling (30 s), so that only the push can make a watch finish quickly."""
    return msgspec.structs.replace(
        e2e_settings, monite_webhook_secret=SECRET, poll_schedule_s=(30.0,)
    )


@pytest.fixture
async def push_api(push_settings: Settings) -> Any:
    async with AsyncTestClient(app=create_app(push_settings)) as client:
        yield client


async def test_a_push_makes_the_watch_poll_now(
    push_api: Client,
    push_settings: Settings,
    start_worker: Any,
    simulator: SimulatorControl,
    receiver: Receiver,
) -> None:
    await start_worker(push_settings)
    task = await simulator.create_task(entity_id=ENTITY, duration_s=600, notify=False)
    watch = await register(push_api, task.id, receiver.url)
    await first_poll_done(push_api, watch["id"])
    await simulator.complete(task.id)
    body = push_body(task.id)
    answer = await push_api.post("/v1/monite/webhooks", content=body, headers=signed(body))
    assert answer.status_code == 200
    assert answer.json() == {"accepted": True, "watches": 1}
    done = await settled(push_api, watch["id"], within_s=5)
    assert done["state"] == "delivered"
    assert done["polls"] == 2


async def test_an_unsigned_push_is_refused(push_api: Client) -> None:
    body = push_body(str(uuid.uuid4()))
    answer = await push_api.post(
        "/v1/monite/webhooks", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 401


async def test_a_push_signed_with_another_secret_is_refused(push_api: Client) -> None:
    body = push_body(str(uuid.uuid4()))
    answer = await push_api.post(
        "/v1/monite/webhooks", content=body, headers=signed(body, secret="whsec_other")
    )
    assert answer.status_code == 401


async def test_a_stale_push_is_refused(push_api: Client) -> None:
    body = push_body(str(uuid.uuid4()))
    old = int(time.time()) - 3600
    answer = await push_api.post("/v1/monite/webhooks", content=body, headers=signed(body, at=old))
    assert answer.status_code == 401


async def test_a_replayed_push_is_ignored(push_api: Client) -> None:
    body = push_body(str(uuid.uuid4()), event_id=str(uuid.uuid4()))
    first = await push_api.post("/v1/monite/webhooks", content=body, headers=signed(body))
    again = await push_api.post("/v1/monite/webhooks", content=body, headers=signed(body))
    assert first.json()["accepted"] is True
    assert again.json()["accepted"] is False


async def test_push_intake_is_off_without_a_secret(e2e_api: Client) -> None:
    body = push_body(str(uuid.uuid4()))
    answer = await e2e_api.post("/v1/monite/webhooks", content=body, headers=signed(body))
    assert answer.status_code == 404


async def test_pushes_are_not_held_to_the_per_client_api_rate_limit(
    push_settings: Settings,
) -> None:
    limited = msgspec.structs.replace(push_settings, api_rate_limit_per_minute=2)
    async with AsyncTestClient(app=create_app(limited)) as api:
        for _ in range(5):
            body = push_body(str(uuid.uuid4()))
            answer = await api.post("/v1/monite/webhooks", content=body, headers=signed(body))
            assert answer.status_code == 200
