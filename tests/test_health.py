"""Health endpoints against a private Redis that the tests stop and start (never the shared one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from service.api.app import create_app
from service.settings import Settings
from service.storage.keys import Keys
from tests.conftest import RedisProcess


@pytest.fixture
def own_redis(private_redis: Callable[..., RedisProcess]) -> RedisProcess:
    return private_redis(appendonly=False)


@pytest.fixture
async def client(
    own_redis: RedisProcess, key_prefix: str
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(Settings(redis_url=own_redis.url, key_prefix=key_prefix))
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


async def test_ready_is_200_while_redis_answers(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["redis"] == "ok"


async def test_ready_is_503_with_the_reason_when_redis_is_down(
    client: AsyncTestClient[Litestar], own_redis: RedisProcess
) -> None:
    own_redis.stop()
    response = await client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["redis"] == "down"
    assert "redis" in body["reason"]


async def test_live_is_200_while_redis_is_down(
    client: AsyncTestClient[Litestar], own_redis: RedisProcess
) -> None:
    own_redis.stop()
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_ready_recovers_when_redis_comes_back(
    client: AsyncTestClient[Litestar], own_redis: RedisProcess
) -> None:
    own_redis.stop()
    assert (await client.get("/health/ready")).status_code == 503
    own_redis.start()
    assert (await client.get("/health/ready")).status_code == 200


async def test_ready_reports_a_worker_heartbeat(
    client: AsyncTestClient[Litestar], own_redis: RedisProcess, key_prefix: str
) -> None:
    before = (await client.get("/health/ready")).json()["workers"]
    redis: Redis = Redis.from_url(own_redis.url)
    await redis.set(Keys(key_prefix).health_check(), "j_complete=0 j_failed=0", ex=60)
    await redis.aclose()
    after = (await client.get("/health/ready")).json()["workers"]
    assert (before, after) == ("no worker heartbeat in the last minute", "heartbeat seen")
