"""The simulator's Monite surface: auth, headers, entities, task lifecycle, upload, listing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.simulator import SimulatorControl

ENTITY = "0b6f8a52-3c1d-4e9f-8a7b-2d1c0e9f8a71"
OTHER_ENTITY = "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a"
PDF = b"%PDF-1.7\n" + b"x" * 200


@pytest.fixture
async def http(simulator: SimulatorControl) -> AsyncIterator[httpx.AsyncClient]:
    """A plain client of the simulator's ``/v1``."""
    async with httpx.AsyncClient(base_url=simulator.base_url, timeout=10.0) as client:
        yield client


@pytest.fixture
async def headers(simulator: SimulatorControl) -> dict[str, str]:
    """Headers of a partner token acting for ``ENTITY``."""
    return simulator.headers(await simulator.token(), ENTITY)


async def test_request_without_version_header_is_400_missing_api_version(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    del headers["x-monite-version"]
    response = await http.get("/ocr_tasks", headers=headers)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "missing_api_version",
            "message": "Missing the x-monite-version HTTP header",
        }
    }


async def test_token_request_with_wrong_secret_is_401(
    http: httpx.AsyncClient, simulator: SimulatorControl
) -> None:
    body = {
        "grant_type": "client_credentials",
        "client_id": simulator.client_id,
        "client_secret": "wrong",
    }
    response = await http.post("/auth/token", json=body, headers=simulator.headers())
    assert response.status_code == 401
    assert "message" in response.json()["error"]


async def test_token_response_carries_configured_lifetime(
    http: httpx.AsyncClient, simulator: SimulatorControl
) -> None:
    await simulator.configure(token_ttl_s=120)
    body = {
        "grant_type": "client_credentials",
        "client_id": simulator.client_id,
        "client_secret": simulator.client_secret,
    }
    response = await http.post("/auth/token", json=body, headers=simulator.headers())
    assert response.status_code == 200
    assert response.json()["expires_in"] == 120
    assert response.json()["token_type"] == "Bearer"


async def test_token_request_with_unknown_grant_is_422(
    http: httpx.AsyncClient, simulator: SimulatorControl
) -> None:
    body = {
        "grant_type": "password",
        "client_id": simulator.client_id,
        "client_secret": simulator.client_secret,
    }
    response = await http.post("/auth/token", json=body, headers=simulator.headers())
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "grant_type"]


async def test_unknown_token_is_401(http: httpx.AsyncClient, simulator: SimulatorControl) -> None:
    response = await http.get("/ocr_tasks", headers=simulator.headers("not-a-token", ENTITY))
    assert response.status_code == 401


async def test_missing_token_is_401(http: httpx.AsyncClient, simulator: SimulatorControl) -> None:
    response = await http.get("/ocr_tasks", headers=simulator.headers(entity_id=ENTITY))
    assert response.status_code == 401


async def test_expired_token_is_401(http: httpx.AsyncClient, simulator: SimulatorControl) -> None:
    await simulator.configure(token_ttl_s=1)
    headers = simulator.headers(await simulator.token(), ENTITY)
    assert (await http.get("/ocr_tasks", headers=headers)).status_code == 200
    await asyncio.sleep(1.1)
    assert (await http.get("/ocr_tasks", headers=headers)).status_code == 401


async def test_revoked_tokens_are_401(
    http: httpx.AsyncClient, simulator: SimulatorControl, headers: dict[str, str]
) -> None:
    assert await simulator.revoke_tokens() == 1
    assert (await http.get("/ocr_tasks", headers=headers)).status_code == 401


async def test_auth_revoke_ends_one_token(
    http: httpx.AsyncClient, simulator: SimulatorControl
) -> None:
    token = await simulator.token()
    body = {
        "client_id": simulator.client_id,
        "client_secret": simulator.client_secret,
        "token": token,
    }
    assert (await http.post("/auth/revoke", json=body, headers=simulator.headers())).is_success
    response = await http.get("/ocr_tasks", headers=simulator.headers(token, ENTITY))
    assert response.status_code == 401


async def test_task_of_another_entity_is_404(
    http: httpx.AsyncClient, simulator: SimulatorControl, headers: dict[str, str]
) -> None:
    task = await simulator.create_task(entity_id=OTHER_ENTITY)
    response = await http.get(f"/ocr_tasks/{task.id}", headers=headers)
    assert response.status_code == 404
    assert response.json() == {
        "error": {"message": "OCR task with the specified ID was not found."}
    }


async def test_list_shows_only_the_callers_entity(
    http: httpx.AsyncClient, simulator: SimulatorControl, headers: dict[str, str]
) -> None:
    mine = await simulator.create_task(entity_id=ENTITY)
    await simulator.create_task(entity_id=OTHER_ENTITY)
    await simulator.create_task()
    response = await http.get("/ocr_tasks", headers=headers)
    assert [t["id"] for t in response.json()["data"]] == [mine.id]


async def test_entity_user_token_acts_in_its_own_entity(
    http: httpx.AsyncClient, simulator: SimulatorControl, headers: dict[str, str]
) -> None:
    user_token = await simulator.token("entity_user", str(uuid.uuid4()))
    created = await http.post(
        "/ocr_tasks",
        json={"file_url": "https://files.example/a.pdf"},
        headers=simulator.headers(user_token),
    )
    task_id = created.json()["id"]
    own = await http.get(f"/ocr_tasks/{task_id}", headers=simulator.headers(user_token))
    partner = await http.get(f"/ocr_tasks/{task_id}", headers=headers)
    assert (own.status_code, partner.status_code) == (200, 404)


async def test_malformed_entity_header_is_422(
    http: httpx.AsyncClient, simulator: SimulatorControl
) -> None:
    headers = simulator.headers(await simulator.token(), "not-a-uuid")
    response = await http.get("/ocr_tasks", headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "x-monite-entity-id"]


async def test_task_id_that_is_not_a_uuid_is_422(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.get("/ocr_tasks/12345", headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "task_id"]


async def test_unknown_task_is_404(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await http.get(f"/ocr_tasks/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 404


async def test_unknown_path_answers_in_monite_error_shape(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.get("/payables_nope", headers=headers)
    assert response.status_code == 404
    assert "message" in response.json()["error"]


async def test_task_from_url_is_processing_then_succeeds_after_its_duration(
    http: httpx.AsyncClient, simulator: SimulatorControl, headers: dict[str, str]
) -> None:
    await simulator.configure(task_duration_s=[0.3, 0.3])
    body = {"file_url": "https://files.example/invoice.pdf", "document_type": "invoice"}
    created = await http.post("/ocr_tasks", json=body, headers=headers)
    assert created.status_code == 202
    assert created.json()["status"] == "processing"
    assert "recognized_data" not in created.json()
    await asyncio.sleep(0.4)
    done = (await http.get(f"/ocr_tasks/{created.json()['id']}", headers=headers)).json()
    assert done["status"] == "success"
    assert done["recognized_data"]["type"] == "invoice"
    assert done["updated_at"] > done["created_at"]


async def test_create_from_url_rejects_unknown_fields(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = {"file_url": "https://files.example/a.pdf", "colour": "blue"}
    response = await http.post("/ocr_tasks", json=body, headers=headers)
    assert response.status_code == 422


async def test_create_from_url_without_file_url_is_422_naming_it(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.post("/ocr_tasks", json={"document_type": "invoice"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file_url"]


async def test_create_from_url_with_broken_json_is_422(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.post("/ocr_tasks", content=b"{nope", headers=headers)
    assert response.status_code == 422


async def test_upload_takes_document_type_from_the_query(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.post(
        "/ocr_tasks/upload_from_file",
        params={"document_type": "receipt"},
        files={"file": ("receipt.pdf", PDF, "application/pdf")},
        headers=headers,
    )
    assert response.status_code == 202
    assert response.json()["document_type"] == "receipt"


async def test_upload_over_the_size_limit_is_413(
    http: httpx.AsyncClient, simulator: SimulatorControl, headers: dict[str, str]
) -> None:
    await simulator.configure(max_upload_bytes=100)
    response = await http.post(
        "/ocr_tasks/upload_from_file", files={"file": ("big.pdf", PDF)}, headers=headers
    )
    assert response.status_code == 413


async def test_upload_of_other_file_types_is_415(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.post(
        "/ocr_tasks/upload_from_file", files={"file": ("a.docx", b"PK\x03\x04...")}, headers=headers
    )
    assert response.status_code == 415


async def test_upload_without_file_is_422(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await http.post(
        "/ocr_tasks/upload_from_file", files={"other": ("a.pdf", PDF)}, headers=headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


async def test_upload_with_a_broken_multipart_body_is_422(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    headers = {**headers, "content-type": "multipart/form-data; boundary=xx"}
    response = await http.post("/ocr_tasks/upload_from_file", content=b"garbage", headers=headers)
    assert response.status_code == 422


async def test_upload_with_unknown_document_type_is_422(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.post(
        "/ocr_tasks/upload_from_file",
        params={"document_type": "passport"},
        files={"file": ("a.pdf", PDF)},
        headers=headers,
    )
    assert response.status_code == 422


async def test_task_created_without_type_gets_a_detected_type_when_done(
    http: httpx.AsyncClient, simulator: SimulatorControl, headers: dict[str, str]
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, outcome="never")
    assert task.document_type is None
    done = await simulator.complete(task.id)
    assert done.document_type in ("invoice", "credit_note", "receipt")
    assert done.recognized_data["type"] == done.document_type


async def test_never_task_stays_processing_until_completed(
    http: httpx.AsyncClient, simulator: SimulatorControl, headers: dict[str, str]
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, outcome="never", document_type="invoice")
    before = (await http.get(f"/ocr_tasks/{task.id}", headers=headers)).json()
    await simulator.complete(task.id, "error")
    after = (await http.get(f"/ocr_tasks/{task.id}", headers=headers)).json()
    assert (before["status"], after["status"]) == ("processing", "error")
    assert "recognized_data" not in after


@pytest.mark.parametrize("payload", [{"type": "invoice", "total_amount": "NaN"}, [1, 2], None, "x"])
async def test_explicit_recognized_data_is_served_verbatim(
    http: httpx.AsyncClient, simulator: SimulatorControl, headers: dict[str, str], payload: Any
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, recognized_data=payload)
    body = (await http.get(f"/ocr_tasks/{task.id}", headers=headers)).json()
    assert body["recognized_data"] == payload


async def test_batch_creates_alike_tasks_in_order(
    http: httpx.AsyncClient, simulator: SimulatorControl, headers: dict[str, str]
) -> None:
    ids = await simulator.create_tasks(5, entity_id=ENTITY, outcome="never")
    listed = (await http.get("/ocr_tasks", headers=headers)).json()["data"]
    assert [t["id"] for t in listed] == ids
    assert {t["status"] for t in listed} == {"processing"}


async def test_control_create_with_taken_id_is_409(simulator: SimulatorControl) -> None:
    task = await simulator.create_task()
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{simulator.root_url}/_sim/tasks", json={"task_id": task.id})
    assert response.status_code == 409


async def test_control_create_with_bad_outcome_is_422(simulator: SimulatorControl) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{simulator.root_url}/_sim/tasks", json={"outcome": "maybe"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "outcome"]


async def test_reset_forgets_tasks(simulator: SimulatorControl) -> None:
    await simulator.create_task()
    await simulator.reset()
    assert (await simulator.counters()).tasks == 0


async def test_a_failed_task_says_the_simulator_made_it_fail(
    http: httpx.AsyncClient, headers: dict[str, str], simulator: SimulatorControl
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, outcome="error")
    body = (await http.get(f"/ocr_tasks/{task.id}", headers=headers)).json()
    assert body["status"] == "error"
    assert "simulator" in body["error"]["message"]


async def test_a_recognized_task_carries_no_error(
    http: httpx.AsyncClient, headers: dict[str, str], simulator: SimulatorControl
) -> None:
    task = await simulator.create_task(entity_id=ENTITY)
    body = (await http.get(f"/ocr_tasks/{task.id}", headers=headers)).json()
    assert body["status"] == "success"
    assert "error" not in body
