"""The dev inbox: the callback receiver ``ocr-relay dev`` runs so a first delivery can be seen."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.cli.dev_inbox import INBOX_PATH, create_inbox_app
from service.domain.signing import generate_secret, sign

SECRET = generate_secret()
BODY = b'{"type": "invoice.recognized", "data": {"watch_id": "wat_1"}}'


def _signed(secret: str) -> dict[str, str]:
    now = int(time.time())
    return {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, "evt_1", now, BODY),
        "content-type": "application/json",
    }


@pytest.fixture
async def inbox() -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_inbox_app(SECRET)) as client:
        yield client


async def test_a_delivery_whose_signature_verifies_is_recorded_as_verified(
    inbox: AsyncTestClient[Any],
) -> None:
    answer = await inbox.post(INBOX_PATH, content=BODY, headers=_signed(SECRET))
    assert answer.status_code == 200
    [arrival] = (await inbox.get(INBOX_PATH)).json()
    assert (arrival["webhook_id"], arrival["verified"], arrival["problem"]) == ("evt_1", True, None)
    assert arrival["event"]["type"] == "invoice.recognized"


async def test_a_delivery_signed_with_another_secret_is_refused_and_recorded_with_why(
    inbox: AsyncTestClient[Any],
) -> None:
    answer = await inbox.post(INBOX_PATH, content=BODY, headers=_signed(generate_secret()))
    assert answer.status_code == 400
    [arrival] = (await inbox.get(INBOX_PATH)).json()
    assert (arrival["verified"], arrival["problem"]) == (False, "no matching signature")


async def test_the_api_does_not_serve_the_dev_inbox(api: AsyncTestClient[Any]) -> None:
    answer = await api.post(INBOX_PATH, content=BODY, headers=_signed(SECRET))
    assert answer.status_code == 404
