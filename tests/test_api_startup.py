"""What the API says about its configuration when it starts."""

from __future__ import annotations

import logging

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.settings import Settings


async def test_an_api_without_api_keys_says_so_loudly_at_start_up(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    no_keys = msgspec.structs.replace(settings, api_keys=())
    with caplog.at_level(logging.WARNING, logger="ocr_relay.api"):
        async with AsyncTestClient(app=create_app(no_keys)):
            pass
    [record] = [r for r in caplog.records if "API_KEYS" in r.getMessage()]
    assert record.levelno >= logging.ERROR
    assert "401" in record.getMessage()


async def test_an_api_with_api_keys_starts_without_that_warning(
    service_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ocr_relay.api"):
        async with AsyncTestClient(app=create_app(service_settings)):
            pass
    assert not [r for r in caplog.records if "API_KEYS" in r.getMessage()]
