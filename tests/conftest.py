"""Shared fixtures: a real Redis slice per test, settings bound to it, the simulator, receivers.

Redis: tests use ``OCR_RELAY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/9``) and a unique key
prefix per test; teardown deletes every key of that prefix (arq's job keys carry it too), so a shared
Redis is never assumed empty and is left as it was found.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from service.keys import Keys
from service.settings import Settings

TEST_REDIS_URL = os.environ.get("OCR_RELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test (or deployment) uses."""
    return f"t-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis(key_prefix: str) -> AsyncIterator[Redis]:
    """A client of the test Redis; every key of this test's prefix is deleted afterwards."""
    client: Redis = Redis.from_url(TEST_REDIS_URL)
    yield client
    keys = [k async for k in client.scan_iter(match=Keys(key_prefix).pattern(), count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def settings(key_prefix: str) -> Settings:
    """Settings bound to this test's Redis slice, with fast schedules for tests."""
    return Settings(redis_url=TEST_REDIS_URL, key_prefix=key_prefix)
