"""``POST /v1/documents``: OCR a document (upload or URL) and watch the task in one call."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from arq.worker import Worker
from litestar.testing import AsyncTestClient

from service.api.errors import InvalidField
from service.operations import Registration, WatchService
from service.simulator import SimulatorControl
from service.storage import Store
from service.storage.idempotency import Claim
from tests.conftest import Receiver, auth
from tests.test_end_to_end import ENTITY, settled

Client = AsyncTestClient[Any]
PDF = b"%PDF-1.7\n" + b"0" * 2048


async def test_an_uploaded_pdf_becomes_a_monite_task_and_a_watch(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    answer = await e2e_api.post(
        "/v1/documents",
        files={"file": ("invoice.pdf", PDF, "application/pdf")},
        data={
            "callback_url": receiver.url,
            "entity_id": ENTITY,
            "document_type": "invoice",
            "metadata": '{"source": "scanner-3"}',
        },
        headers=auth(),
    )
    assert answer.status_code == 202, answer.text
    watch = answer.json()
    assert watch["secret"].startswith("whsec_")
    assert (await simulator.counters()).tasks == 1
    done = await settled(e2e_api, watch["id"])
    assert done["state"] == "delivered"
    [request] = await receiver.wait_for(1)
    event = msgspec.json.decode(request.body)
    assert event["data"]["task_id"] == watch["task_id"]
    assert event["data"]["metadata"] == {"source": "scanner-3"}


async def test_a_file_url_becomes_a_monite_task_and_a_watch(
    e2e_api: Client, worker: Worker, simulator: SimulatorControl, receiver: Receiver
) -> None:
    answer = await e2e_api.post(
        "/v1/documents",
        json={
            "file_url": "https://files.example.com/inv.pdf",
            "callback_url": receiver.url,
            "entity_id": ENTITY,
            "document_type": "receipt",
        },
        headers=auth(),
    )
    assert answer.status_code == 202, answer.text
    done = await settled(e2e_api, answer.json()["id"])
    assert done["event_type"] == "receipt.recognized"


async def test_a_file_that_is_not_pdf_png_or_jpeg_is_refused_before_monite(
    e2e_api: Client, simulator: SimulatorControl, receiver: Receiver
) -> None:
    answer = await e2e_api.post(
        "/v1/documents",
        files={"file": ("notes.txt", b"hello", "text/plain")},
        data={"callback_url": receiver.url},
        headers=auth(),
    )
    assert answer.status_code == 415
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert (await simulator.counters()).tasks == 0


async def test_a_refused_callback_creates_no_monite_task(
    e2e_api: Client, simulator: SimulatorControl
) -> None:
    answer = await e2e_api.post(
        "/v1/documents",
        files={"file": ("invoice.pdf", PDF, "application/pdf")},
        data={"callback_url": "http://169.254.169.254/hook"},
        headers=auth(),
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "callback_url"
    assert (await simulator.counters()).tasks == 0


async def test_an_unknown_form_field_is_named(e2e_api: Client, receiver: Receiver) -> None:
    answer = await e2e_api.post(
        "/v1/documents",
        files={"file": ("invoice.pdf", PDF, "application/pdf")},
        data={"callback_url": receiver.url, "colour": "blue"},
        headers=auth(),
    )
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "colour"


async def test_an_unknown_json_field_is_named(e2e_api: Client, receiver: Receiver) -> None:
    answer = await e2e_api.post(
        "/v1/documents",
        json={"file_url": "https://x.example/a.pdf", "callback_url": receiver.url, "pages": 3},
        headers=auth(),
    )
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "pages"


async def test_monite_refusing_a_too_large_file_is_passed_on_as_413(
    e2e_api: Client, simulator: SimulatorControl, receiver: Receiver
) -> None:
    await simulator.configure(max_upload_bytes=1024)
    answer = await e2e_api.post(
        "/v1/documents",
        files={"file": ("invoice.pdf", PDF, "application/pdf")},
        data={"callback_url": receiver.url},
        headers=auth(),
    )
    assert answer.status_code == 413
    assert "Monite" in answer.json()["detail"]


async def test_another_content_type_is_a_415(e2e_api: Client) -> None:
    answer = await e2e_api.post(
        "/v1/documents", content=b"x", headers={**auth(), "content-type": "text/plain"}
    )
    assert answer.status_code == 415


async def test_a_retry_with_the_same_idempotency_key_creates_no_second_monite_task(
    e2e_api: Client, simulator: SimulatorControl, receiver: Receiver
) -> None:
    headers = {**auth(), "Idempotency-Key": "upload-4711"}
    body = {"file_url": "https://files.example.com/inv.pdf", "callback_url": receiver.url}
    first = await e2e_api.post("/v1/documents", json=body, headers=headers)
    again = await e2e_api.post("/v1/documents", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"]
    assert again.json().get("secret") is None  # shown once, in the first answer
    assert (await simulator.counters()).tasks == 1


async def test_a_retry_after_monite_refused_the_first_try_makes_the_task(
    e2e_api: Client, simulator: SimulatorControl, receiver: Receiver
) -> None:
    headers = {**auth(), "Idempotency-Key": "upload-0815"}
    upload = {"files": {"file": ("invoice.pdf", PDF, "application/pdf")}}
    form = {"callback_url": receiver.url}
    await simulator.configure(max_upload_bytes=1000)
    refused = await e2e_api.post("/v1/documents", data=form, headers=headers, **upload)
    assert refused.status_code == 413
    await simulator.configure(max_upload_bytes=20 * 1024 * 1024)
    retried = await e2e_api.post("/v1/documents", data=form, headers=headers, **upload)
    assert retried.status_code == 202, retried.text
    assert (await simulator.counters()).tasks == 1


async def test_a_request_while_another_with_its_idempotency_key_is_at_work_gets_409(
    e2e_api: Client, store: Store, simulator: SimulatorControl, receiver: Receiver
) -> None:
    # As if another API process were uploading under this key right now.
    key = store.keys.idempotency("alpha", "upload-in-flight")
    assert await store.idempotency.claim(key, hold_s=60) == Claim()
    answer = await e2e_api.post(
        "/v1/documents",
        json={"file_url": "https://files.example.com/inv.pdf", "callback_url": receiver.url},
        headers={**auth(), "Idempotency-Key": "upload-in-flight"},
    )
    assert answer.status_code == 409
    assert answer.json()["errors"][0]["field"] == "Idempotency-Key"
    assert answer.headers["retry-after"] == "5"
    assert (await simulator.counters()).tasks == 0


async def test_an_idempotency_key_reused_for_another_document_is_refused_before_monite(
    e2e_api: Client, simulator: SimulatorControl, receiver: Receiver
) -> None:
    headers = {**auth(), "Idempotency-Key": "upload-reused"}
    first = {"file_url": "https://files.example.com/a.pdf", "callback_url": receiver.url}
    other = {"file_url": "https://files.example.com/b.pdf", "callback_url": receiver.url}
    assert (await e2e_api.post("/v1/documents", json=first, headers=headers)).status_code == 202
    answer = await e2e_api.post("/v1/documents", json=other, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "Idempotency-Key"
    assert (await simulator.counters()).tasks == 1


async def test_a_retry_after_registration_failed_reuses_the_monite_task_it_made(
    e2e_api: Client,
    simulator: SimulatorControl,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The registration fails once after Monite made the task (as when the callback's name stops
    # resolving between the two checks): a fault injected at that line, the rest is real.
    original = WatchService.register
    failures: list[str] = []

    async def fails_once(self: WatchService, reg: Registration) -> Any:
        if not failures:
            failures.append(reg.task_id)
            raise InvalidField("callback_url", "host could not be resolved")
        return await original(self, reg)

    monkeypatch.setattr(WatchService, "register", fails_once)
    headers = {**auth(), "Idempotency-Key": "upload-orphan"}
    body = {"file_url": "https://files.example.com/inv.pdf", "callback_url": receiver.url}
    failed = await e2e_api.post("/v1/documents", json=body, headers=headers)
    assert failed.status_code == 422
    retried = await e2e_api.post("/v1/documents", json=body, headers=headers)
    assert retried.status_code == 202, retried.text
    assert retried.json()["task_id"] == failures[0]
    assert (await simulator.counters()).tasks == 1
