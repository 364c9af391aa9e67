"""Monite's ``ocr_task.finished`` push makes a watch poll at once; forged or replayed ones don't."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service import metrics
from service.api.app import create_app
from service.settings import Settings
from service.simulator import SimulatorControl
from tests.conftest import Receiver, auth
from tests.test_end_to_end import ENTITY, register, settled

SECRET = "whsec_monite-push-test-secret"
Client = AsyncTestClient[Any]


def push_body(task_id: str, event_id: str | None = None, id_field: str = "object.id") -> bytes:
    """An ``ocr_task.finished`` event naming the task in ``object.id`` or ``object_id``."""
    names_task = {"object": {"id": task_id}} if id_field == "object.id" else {"object_id": task_id}
    return msgspec.json.encode(
        {
            "id": event_id or str(uuid.uuid4()),
            "created_at": "2026-11-25T10:00:00Z",
            "action": "ocr_task.finished",
            "api_version": "2024-05-25",
            "description": "OCR task finished",
            "entity_id": ENTITY,
            **names_task,
            "object_type": "ocr_task",
            "webhook_subscription_id": str(uuid.uuid4()),
        }
    )


def signed(
    body: bytes, secret: str = SECRET, at: int | None = None, key: bytes | None = None
) -> dict[str, str]:
    """Monite's header for ``body``, keyed with ``key`` (default: the secret's text)."""
    t = str(at if at is not None else int(time.time()))
    hmac_key = secret.encode() if key is None else key
    v1 = hmac.new(hmac_key, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
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


# A secret whose text after whsec_ is base64, so that both key forms exist.
KEY_BYTES = bytes(range(32))
B64_SECRET = "whsec_" + base64.b64encode(KEY_BYTES).decode()
KEY_FORMS = {"text": B64_SECRET.encode(), "base64": KEY_BYTES}


@pytest.fixture
async def b64_push_api(push_settings: Settings) -> Any:
    settings = msgspec.structs.replace(push_settings, monite_webhook_secret=B64_SECRET)
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


def _pushes_counted(key_form: str, id_field: str) -> float:
    labels = {"signature_key": key_form, "task_id_field": id_field}
    return metrics.REGISTRY.get_sample_value("ocr_relay_monite_pushes_total", labels) or 0.0


@pytest.mark.parametrize("id_field", ["object.id", "object_id"])
@pytest.mark.parametrize("key_form", KEY_FORMS)
async def test_a_push_in_either_key_form_naming_the_task_either_way_reaches_its_watch(
    b64_push_api: Client, receiver: Receiver, key_form: str, id_field: str
) -> None:
    task_id = str(uuid.uuid4())
    await register(b64_push_api, task_id, receiver.url)
    body = push_body(task_id, id_field=id_field)
    headers = signed(body, secret=B64_SECRET, key=KEY_FORMS[key_form])

    answer = await b64_push_api.post("/v1/monite/webhooks", content=body, headers=headers)

    assert answer.json() == {"accepted": True, "watches": 1}


@pytest.mark.parametrize("id_field", ["object.id", "object_id"])
@pytest.mark.parametrize("key_form", KEY_FORMS)
async def test_the_pushes_metric_counts_which_key_form_and_id_field_matched(
    b64_push_api: Client, key_form: str, id_field: str
) -> None:
    before = _pushes_counted(key_form, id_field)
    body = push_body(str(uuid.uuid4()), id_field=id_field)
    headers = signed(body, secret=B64_SECRET, key=KEY_FORMS[key_form])

    await b64_push_api.post("/v1/monite/webhooks", content=body, headers=headers)

    assert _pushes_counted(key_form, id_field) == before + 1


async def test_a_push_signed_with_the_decoded_key_of_another_secret_is_refused(
    b64_push_api: Client,
) -> None:
    body = push_body(str(uuid.uuid4()))
    headers = signed(body, secret=B64_SECRET, key=bytes(32))
    answer = await b64_push_api.post("/v1/monite/webhooks", content=body, headers=headers)
    assert answer.status_code == 401


async def test_a_signed_push_that_is_not_json_is_a_422_and_logged_as_left_to_polling(
    push_api: Client, caplog: pytest.LogCaptureFixture
) -> None:
    body = b"<ocr_task finished/>"
    answer = await push_api.post("/v1/monite/webhooks", content=body, headers=signed(body))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "body"
    assert any("keep polling on schedule" in r.getMessage() for r in caplog.records)


async def test_a_signed_push_naming_no_task_is_not_accepted_and_logged_as_left_to_polling(
    push_api: Client, caplog: pytest.LogCaptureFixture
) -> None:
    body = msgspec.json.encode(
        {"id": str(uuid.uuid4()), "action": "ocr_task.finished", "object_type": "ocr_task"}
    )
    answer = await push_api.post("/v1/monite/webhooks", content=body, headers=signed(body))
    assert answer.json() == {"accepted": False, "watches": 0}
    [line] = [r for r in caplog.records if "keep polling on schedule" in r.getMessage()]
    assert "names no task" in line.__dict__["reason"]
