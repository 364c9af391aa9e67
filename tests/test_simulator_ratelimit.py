"""The simulator's per-client rate limit: token bucket, 429 + ``Retry-After``, headers, counters."""

from __future__ import annotations

import asyncio

import httpx

from service.simulator import SimulatorControl
from service.simulator.ratelimit import ANONYMOUS, TokenBucket

ENTITY = "5c4b3a29-1807-46f5-8e4d-3c2b1a0f9e8d"
RATE_HEADERS = (
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-ratelimit-limit-second",
    "x-ratelimit-remaining-second",
)


def test_bucket_allows_a_burst_then_refuses_with_whole_seconds_to_wait() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0, now=0.0)
    decisions = [bucket.take(now=0.0, wall=1000.0) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[2].retry_after == 1
    assert decisions[2].headers()["Retry-After"] == "1"


def test_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0, now=0.0)
    for _ in range(2):
        bucket.take(now=0.0, wall=0.0)
    assert not bucket.take(now=0.25, wall=0.0).allowed
    assert bucket.take(now=0.5, wall=0.0).allowed


def test_slow_bucket_asks_to_wait_several_seconds() -> None:
    bucket = TokenBucket(rate=0.25, burst=1.0, now=0.0)
    bucket.take(now=0.0, wall=0.0)
    assert bucket.take(now=0.0, wall=0.0).retry_after == 4


async def test_requests_over_the_limit_get_429_with_retry_after_and_are_counted(
    simulator: SimulatorControl,
) -> None:
    # A slow refill keeps the outcome exact however long the burst takes to arrive.
    await simulator.configure(rate_limit=0.2, rate_burst=5)
    headers = simulator.headers(await simulator.token(), ENTITY)
    async with httpx.AsyncClient(base_url=simulator.base_url) as http:
        answers = await asyncio.gather(
            *(http.get("/ocr_tasks", headers=headers) for _ in range(10))
        )
    refused = [r for r in answers if r.status_code == 429]
    assert len(refused) == 6  # the token request took one of the five
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    counters = (await simulator.counters()).clients[simulator.client_id]
    assert counters.throttled == len(refused)
    assert counters.requests == 11
    assert counters.by_endpoint["get_ocr_tasks"]["429"] == len(refused)
    assert counters.by_endpoint["post_auth_token"] == {"200": 1}


async def test_peak_counts_only_admitted_requests(simulator: SimulatorControl) -> None:
    await simulator.configure(rate_limit=0.2, rate_burst=3)
    headers = simulator.headers(await simulator.token(), ENTITY)
    async with httpx.AsyncClient(base_url=simulator.base_url) as http:
        await asyncio.gather(*(http.get("/ocr_tasks", headers=headers) for _ in range(8)))
    counters = (await simulator.counters()).clients[simulator.client_id]
    assert counters.peak_per_second == 3
    assert counters.throttled == 6


async def test_every_answer_carries_rate_limit_headers(simulator: SimulatorControl) -> None:
    token = await simulator.token()
    async with httpx.AsyncClient(base_url=simulator.base_url) as http:
        answers = [
            await http.get("/ocr_tasks", headers=simulator.headers(token, ENTITY)),
            await http.get("/ocr_tasks", headers={"Authorization": f"Bearer {token}"}),
            await http.get("/ocr_tasks", headers=simulator.headers("bogus", ENTITY)),
        ]
    assert [r.status_code for r in answers] == [200, 400, 401]
    for response in answers:
        assert all(name in response.headers for name in RATE_HEADERS)
        assert response.headers["x-request-id"]


async def test_requests_without_a_known_client_count_as_anonymous(
    simulator: SimulatorControl,
) -> None:
    async with httpx.AsyncClient(base_url=simulator.base_url) as http:
        await http.get("/ocr_tasks", headers=simulator.headers("bogus", ENTITY))
    counters = await simulator.counters()
    assert counters.clients[ANONYMOUS].by_endpoint == {"get_ocr_tasks": {"401": 1}}
    assert simulator.client_id not in counters.clients


async def test_reset_clears_counters(simulator: SimulatorControl) -> None:
    await simulator.token()
    await simulator.reset()
    assert (await simulator.counters()).clients == {}
