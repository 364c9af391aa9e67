"""The shared Monite request budget, against the real Redis, with several clients like workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from redis.asyncio import Redis

from service.monite.budget import RateBudget, RateBudgetTimeout
from service.storage.keys import Keys
from tests.conftest import TEST_REDIS_URL

BudgetFactory = Callable[..., RateBudget]


@pytest.fixture
async def budget_factory(redis: Redis, key_prefix: str) -> AsyncIterator[BudgetFactory]:
    """Build budgets on one shared key, each on its own Redis connection (like separate workers)."""
    keys = Keys(key_prefix)
    clients: list[Redis] = []

    def build(rate_per_s: float, burst: int, reserve: int | None = None) -> RateBudget:
        client: Redis = Redis.from_url(TEST_REDIS_URL)
        clients.append(client)
        return RateBudget(
            client, keys.rate_budget("c"), keys.rate_pause("c"), rate_per_s, burst, reserve
        )

    yield build
    for client in clients:
        await client.aclose()


def _max_in_window(stamps: list[float], window_s: float) -> int:
    stamps = sorted(stamps)
    best = 0
    start = 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_two_budgets_on_one_key_together_stay_within_the_rate(
    budget_factory: BudgetFactory,
) -> None:
    rate, burst = 40.0, 4
    budgets = [budget_factory(rate, burst), budget_factory(rate, burst)]
    stamps: list[float] = []

    async def worker(budget: RateBudget, priority: str) -> None:
        for _ in range(12):
            await budget.acquire("high" if priority == "high" else "low")
            stamps.append(time.monotonic())

    await asyncio.gather(
        *(worker(b, p) for b in budgets for p in ("high", "low", "low")),
    )

    assert len(stamps) == 72
    # GCRA bound: at most `burst` plus one per interval in any window; 10 ms covers the delay
    # between the server granting a slot and this process recording it.
    for window in (0.25, 0.5, 1.0):
        assert _max_in_window(stamps, window) <= burst + int((window + 0.01) * rate) + 1


async def test_low_priority_cannot_use_the_reserve(budget_factory: BudgetFactory) -> None:
    budget = budget_factory(rate_per_s=0.5, burst=4, reserve=2)

    for _ in range(2):
        await budget.acquire("low", max_wait_s=0)
    with pytest.raises(RateBudgetTimeout):
        await budget.acquire("low", max_wait_s=0)


async def test_high_priority_uses_the_reserve_left_by_low(budget_factory: BudgetFactory) -> None:
    budget = budget_factory(rate_per_s=0.5, burst=4, reserve=2)
    for _ in range(2):
        await budget.acquire("low", max_wait_s=0)

    for _ in range(2):
        await budget.acquire("high", max_wait_s=0)
    with pytest.raises(RateBudgetTimeout):
        await budget.acquire("high", max_wait_s=0)


async def test_waiting_high_requests_go_before_low_requests_that_waited_longer(
    budget_factory: BudgetFactory,
) -> None:
    low_budget, high_budget = budget_factory(5.0, 1), budget_factory(5.0, 1)
    await low_budget.acquire("low")
    order: list[str] = []

    async def take(budget: RateBudget, priority: str) -> None:
        await budget.acquire("high" if priority == "high" else "low")
        order.append(priority)

    lows = [asyncio.create_task(take(low_budget, "low")) for _ in range(2)]
    await asyncio.sleep(0.02)  # the low requests are now waiting for the next slot
    highs = [asyncio.create_task(take(high_budget, "high")) for _ in range(3)]
    await asyncio.gather(*lows, *highs)

    assert order == ["high", "high", "high", "low", "low"]


async def test_max_wait_reports_when_a_slot_frees(budget_factory: BudgetFactory) -> None:
    budget = budget_factory(rate_per_s=2.0, burst=1)
    await budget.acquire("high")

    with pytest.raises(RateBudgetTimeout) as refused:
        await budget.acquire("high", max_wait_s=0.05)

    assert 0.05 < refused.value.retry_after_s <= 0.5


async def test_pause_is_seen_by_another_process(budget_factory: BudgetFactory) -> None:
    pausing, other = budget_factory(100.0, 5), budget_factory(100.0, 5)

    await pausing.pause_for(2.0)

    with pytest.raises(RateBudgetTimeout) as refused:
        await other.acquire("high", max_wait_s=0.1)
    assert 1.5 < refused.value.retry_after_s <= 2.0


async def test_acquire_waits_out_a_pause(budget_factory: BudgetFactory) -> None:
    budget = budget_factory(100.0, 5)
    await budget.pause_until(time.time() + 0.3)

    waited = await budget.acquire("low")

    assert waited >= 0.25


async def test_a_shorter_pause_does_not_cut_a_longer_one(budget_factory: BudgetFactory) -> None:
    budget = budget_factory(100.0, 5)
    await budget.pause_for(2.0)
    await budget.pause_for(0.1)

    with pytest.raises(RateBudgetTimeout) as refused:
        await budget.acquire("high", max_wait_s=0)
    assert refused.value.retry_after_s > 1.5


async def test_spent_per_second_quota_header_pauses_until_the_next_second(
    budget_factory: BudgetFactory,
) -> None:
    budget = budget_factory(100.0, 5)

    await budget.observe_headers(httpx.Headers({"X-RateLimit-Remaining-Second": "0"}))

    with pytest.raises(RateBudgetTimeout) as refused:
        await budget.acquire("high", max_wait_s=0)
    assert 0.5 < refused.value.retry_after_s <= 1.0


async def test_spent_quota_header_pauses_for_its_reset(budget_factory: BudgetFactory) -> None:
    budget = budget_factory(100.0, 5)

    await budget.observe_headers(
        httpx.Headers({"RateLimit-Remaining": "0", "RateLimit-Reset": "3"})
    )

    with pytest.raises(RateBudgetTimeout) as refused:
        await budget.acquire("high", max_wait_s=0)
    assert 2.5 < refused.value.retry_after_s <= 3.0


async def test_remaining_quota_or_garbage_headers_do_not_pause(
    budget_factory: BudgetFactory,
) -> None:
    budget = budget_factory(100.0, 5)

    await budget.observe_headers(
        httpx.Headers(
            {
                "RateLimit-Remaining": "7",
                "RateLimit-Reset": "1",
                "X-RateLimit-Remaining-Second": "not-a-number",
            }
        )
    )

    await budget.acquire("high", max_wait_s=0)  # raises RateBudgetTimeout when paused


def test_reserve_must_leave_low_priority_a_slot(redis: Redis) -> None:
    with pytest.raises(ValueError, match="reserve"):
        RateBudget(redis, "k", "p", rate_per_s=10, burst=2, reserve=2)
