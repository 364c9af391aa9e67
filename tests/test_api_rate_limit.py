"""The API's per-client rate limit (``API_RATE_LIMIT_PER_MINUTE``), counted per API key in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from service.api.app import create_app
from service.api.rate_limit import ClientRateLimit
from service.settings import Settings
from tests.conftest import API_KEYS, auth

LIMIT = 3
Client = AsyncTestClient[Any]


@pytest.fixture
async def limited_api(service_settings: Settings, redis: Redis) -> AsyncIterator[Client]:
    """The API with a limit of ``LIMIT`` requests per minute and client."""
    settings = msgspec.structs.replace(service_settings, api_rate_limit_per_minute=LIMIT)
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def exhaust(api: Client, client: str) -> None:
    """Spend the whole minute's allowance of ``client``."""
    for _ in range(LIMIT):
        assert (await api.get("/v1/watches", headers=auth(client))).status_code == 200


async def test_a_client_over_its_limit_gets_429_problem_with_retry_after(
    limited_api: Client,
) -> None:
    await exhaust(limited_api, "alpha")
    refused = await limited_api.get("/v1/watches", headers=auth("alpha"))
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["status"] == 429
    assert 0 < int(refused.headers["retry-after"]) <= 60


async def test_responses_tell_the_client_its_limit_and_what_is_left(limited_api: Client) -> None:
    first = await limited_api.get("/v1/watches", headers=auth("alpha"))
    assert int(first.headers["ratelimit-limit"]) == LIMIT
    assert int(first.headers["ratelimit-remaining"]) == LIMIT - 1
    assert int(first.headers["ratelimit-reset"]) <= 60
    assert "ratelimit-policy" in first.headers


async def test_another_client_is_not_affected_by_one_over_its_limit(limited_api: Client) -> None:
    await exhaust(limited_api, "alpha")
    assert (await limited_api.get("/v1/watches", headers=auth("alpha"))).status_code == 429
    other = await limited_api.get("/v1/watches", headers=auth("beta"))
    assert other.status_code == 200
    assert int(other.headers["ratelimit-remaining"]) == LIMIT - 1


async def test_spellings_of_one_key_share_one_allowance(limited_api: Client) -> None:
    key = API_KEYS["alpha"]
    spellings = [f"Bearer {key}", f"bearer {key}", f"Bearer  {key}", f"BEARER {key} "]
    statuses = [
        (await limited_api.get("/v1/watches", headers={"Authorization": s})).status_code
        for s in spellings + spellings[:1]
    ]
    assert statuses == [200] * LIMIT + [429, 429]


async def test_requests_with_unknown_keys_share_their_address_allowance(
    limited_api: Client,
) -> None:
    statuses = [
        (
            await limited_api.get("/v1/watches", headers={"Authorization": f"Bearer guess-{n}"})
        ).status_code
        for n in range(LIMIT + 1)
    ]
    assert statuses == [401] * LIMIT + [429]


async def test_health_endpoints_are_not_rate_limited(limited_api: Client) -> None:
    for _ in range(LIMIT + 2):
        assert (await limited_api.get("/health/live")).status_code == 200


async def test_concurrent_requests_never_pass_beyond_the_limit(
    redis: Redis, key_prefix: str
) -> None:
    limit = ClientRateLimit(redis, key_prefix, per_minute=10)
    decisions = await asyncio.gather(*(limit.hit("alpha") for _ in range(25)))
    assert sum(d.allowed for d in decisions) == 10


async def test_a_refused_client_passes_again_once_its_allowance_refills(
    redis: Redis, key_prefix: str
) -> None:
    limit = ClientRateLimit(redis, key_prefix, per_minute=120)  # one more every 0.5 s
    for _ in range(120):
        assert (await limit.hit("alpha")).allowed
    refused = await limit.hit("alpha")
    assert not refused.allowed
    assert refused.retry_after_s == 1

    await asyncio.sleep(0.6)
    assert (await limit.hit("alpha")).allowed
