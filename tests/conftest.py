"""Shared fixtures: a real Redis slice per test, settings bound to it, the simulator, receivers.

Redis: tests use ``OCR_RELAY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/9``) and a unique key
prefix per test; teardown deletes every key of that prefix (arq's job keys carry it too), so a shared
Redis is never assumed empty and is left as it was found.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.devstack import RedisServer
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


# --- process fixtures ---
# Fault tests need a Redis they may stop, kill and restart; the shared one must never be touched.


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory: ``private_redis(appendonly=True)`` starts a ``redis-server`` of this test alone.

    The returned ``RedisServer`` has ``url``, ``port``, ``stop()`` (graceful), ``kill()`` (crash)
    and ``start()`` (again, same port and data). Every server still running is stopped afterwards.
    """
    servers: list[RedisServer] = []

    def start(*, appendonly: bool = True) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", appendonly=appendonly)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
