"""Every simulator response decodes with Monite's official SDK models and with our msgspec models.

Many generated documents (all types, sparse and inconsistent ones included) go through both.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from monite.types import (
    AccessTokenResponse,
    ErrorSchemaResponse,
    HttpValidationError,
    OcrTaskResponseSchema,
    OcrTasksPaginationResponse,
)

from service.domain.monite_models import OcrTask, decode_page, decode_task
from service.simulator import SimulatorControl
from tests.test_normalize import shared_fixture

ENTITY = "2d3c4b5a-6978-4a1b-9c8d-7e6f5a4b3c2d"
MONITE_FIXTURES = shared_fixture("monite")
# document_type → (the SDK's class, our class) of recognized_data
CLASSES_OF_TYPE = {
    "invoice": ("OcrTaskResponseSchemaRecognizedData_Invoice", "OcrInvoice"),
    "credit_note": ("OcrTaskResponseSchemaRecognizedData_CreditNote", "OcrCreditNote"),
    "receipt": ("OcrTaskResponseSchemaRecognizedData_Receipt", "OcrReceipt"),
}


@pytest.fixture
async def monite(simulator: SimulatorControl) -> AsyncIterator[httpx.AsyncClient]:
    """A ``/v1`` client for ``ENTITY``, with many sparse and inconsistent documents."""
    await simulator.configure(sparse_rate=0.3, mismatch_rate=0.5, rate_limit=1000, rate_burst=1000)
    headers = simulator.headers(await simulator.token(), ENTITY)
    async with httpx.AsyncClient(base_url=simulator.base_url, headers=headers) as http:
        yield http


def _both_accept_task(body: bytes) -> tuple[OcrTaskResponseSchema, OcrTask]:
    ours = decode_task(body)
    sdk = OcrTaskResponseSchema.model_validate_json(body)
    assert (ours.id, ours.status, ours.document_type) == (sdk.id, sdk.status, sdk.document_type)
    return sdk, ours


async def test_generated_tasks_decode_with_both_models(
    simulator: SimulatorControl, monite: httpx.AsyncClient
) -> None:
    kinds: list[Any] = ["invoice", "credit_note", "receipt"]
    tasks = [
        await simulator.create_task(entity_id=ENTITY, document_type=kinds[i % 3]) for i in range(90)
    ]
    for task in tasks:
        response = await monite.get(f"/ocr_tasks/{task.id}")
        sdk, ours = _both_accept_task(response.content)
        assert sdk.document_type is not None
        classes = (type(sdk.recognized_data).__name__, type(ours.recognized_data).__name__)
        assert classes == CLASSES_OF_TYPE[sdk.document_type]


@pytest.mark.parametrize(
    "fixture",
    [
        "ocr_task_invoice_de",
        "ocr_task_credit_note_gb",
        "ocr_task_receipt_at",
        "ocr_task_invoice_sparse",
    ],
)
async def test_fixture_payloads_are_served_verbatim_and_decode_with_both_models(
    simulator: SimulatorControl, monite: httpx.AsyncClient, fixture: str
) -> None:
    original = json.loads((MONITE_FIXTURES / f"{fixture}.json").read_text(encoding="utf-8"))
    task = await simulator.create_task(
        entity_id=ENTITY,
        document_type=original["document_type"],
        recognized_data=original["recognized_data"],
    )
    response = await monite.get(f"/ocr_tasks/{task.id}")
    _both_accept_task(response.content)
    assert response.json()["recognized_data"] == original["recognized_data"]


async def test_processing_and_error_tasks_decode_with_both_models(
    simulator: SimulatorControl, monite: httpx.AsyncClient
) -> None:
    for outcome in ("never", "error"):
        task = await simulator.create_task(entity_id=ENTITY, outcome=outcome)
        sdk, ours = _both_accept_task((await monite.get(f"/ocr_tasks/{task.id}")).content)
        assert sdk.recognized_data is None
        assert ours.recognized_data is None


async def test_created_task_decodes_with_both_models(monite: httpx.AsyncClient) -> None:
    response = await monite.post("/ocr_tasks", json={"file_url": "https://files.example/a.pdf"})
    assert response.status_code == 202
    _both_accept_task(response.content)


async def test_list_pages_decode_with_both_models(
    simulator: SimulatorControl, monite: httpx.AsyncClient
) -> None:
    for _ in range(30):
        await simulator.create_task(entity_id=ENTITY)
    response = await monite.get("/ocr_tasks", params={"limit": 25})
    ours = decode_page(response.content)
    sdk = OcrTasksPaginationResponse.model_validate_json(response.content)
    assert len(ours.data) == len(sdk.data) == 25
    assert ours.next_pagination_token == sdk.next_pagination_token is not None


async def test_token_response_decodes_with_the_sdk_model(
    simulator: SimulatorControl, monite: httpx.AsyncClient
) -> None:
    body = {
        "grant_type": "client_credentials",
        "client_id": simulator.client_id,
        "client_secret": simulator.client_secret,
    }
    response = await monite.post("/auth/token", json=body)
    token = AccessTokenResponse.model_validate_json(response.content)
    assert token.token_type == "Bearer"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/ocr_tasks", {"Authorization": "Bearer nope"}, 401),
        ("/ocr_tasks", {"x-monite-version": ""}, 400),
        ("/ocr_tasks/0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", {}, 404),
    ],
)
async def test_error_bodies_decode_with_the_sdk_model(
    monite: httpx.AsyncClient, path: str, headers: dict[str, str], status: int
) -> None:
    response = await monite.get(path, headers=headers)
    assert response.status_code == status
    assert ErrorSchemaResponse.model_validate_json(response.content).error.message


async def test_validation_errors_decode_with_the_sdk_model(monite: httpx.AsyncClient) -> None:
    response = await monite.get("/ocr_tasks", params={"limit": 0})
    assert response.status_code == 422
    assert HttpValidationError.model_validate_json(response.content).detail
