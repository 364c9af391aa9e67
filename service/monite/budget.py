"""Monite's rate budget, shared by every process: a GCRA in Redis with priorities and pauses.

Monite limits requests per API client, not per process, so every worker draws from the same budget.
The state is one Redis string (the theoretical arrival time, TAT, in ms) updated by one Lua script
that reads the clock with ``TIME``: the Redis server is the only clock, so skew between workers does
not matter.

Priorities: ``high`` requests (creating tasks, first polls) queue by reservation, in arrival
order, and may use the whole burst; ``low`` requests (re-polls) take a slot only when one is free
right now without touching the ``reserve`` kept for ``high``, and otherwise retry later. While high
requests are queued the TAT stays ahead of the low threshold, so re-polls wait until it drains.

A pause (after a 429 with ``Retry-After``, or when Monite's headers say the quota is spent) is a
second key holding the epoch ms before which nobody may take a slot.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Final, Literal

from redis.asyncio import Redis

Priority = Literal["high", "low"]

# A bogus header (or Retry-After) must not stall every worker for hours.
MAX_PAUSE_S: Final = 300.0
# Epoch seconds are above this; smaller RateLimit-Reset values are delta seconds (Kong style).
_EPOCH_THRESHOLD: Final = 1_000_000_000.0

_ACQUIRE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then
  return {0, string.format('%.3f', pause - now)}
end
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local queue = ARGV[3] == '1'
local max_wait = tonumber(ARGV[4])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local wait = tat + interval - tau - now
if wait > 0 and ((not queue) or (max_wait >= 0 and wait > max_wait)) then
  return {0, string.format('%.3f', wait)}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
if KEYS[3] then
  redis.call('HINCRBY', KEYS[3], 'monite:requests', 1)
  redis.call('EXPIRE', KEYS[3], 7200)
end
return {1, string.format('%.3f', math.max(wait, 0))}
"""

# ARGV[1]: pause end in ms; ARGV[2] == '1' when it is relative to the server's clock.
# Returns the ms left of the (possibly longer, already set) pause.
_PAUSE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local target = tonumber(ARGV[1])
if ARGV[2] == '1' then target = now + target end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if target > current and target > now then
  redis.call('SET', KEYS[1], string.format('%.3f', target), 'PX', math.ceil(target - now))
  current = target
end
return string.format('%.3f', math.max(current - now, 0))
"""


class RateBudgetTimeout(Exception):
    """The budget would make the caller wait longer than it allowed (``max_wait_s``)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate budget exhausted; a slot frees in {retry_after_s:.3f} s")
        self.retry_after_s = retry_after_s


class RateBudget:
    """A request budget of ``rate_per_s`` with bursts of ``burst``, shared through Redis.

    ``reserve`` slots of the burst are kept for ``high`` priority (default: half of it, rounded
    down, so low priority always gets at least one slot). ``tally``, when given, names the hash
    that counts a granted slot now (``monite:requests``, for the console), counted in the same
    script.
    """

    def __init__(
        self,
        redis: Redis,
        key: str,
        pause_key: str,
        rate_per_s: float,
        burst: int,
        reserve: int | None = None,
        tally: Callable[[], str] | None = None,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        reserve = burst // 2 if reserve is None else reserve
        if not 0 <= reserve < burst:
            raise ValueError("reserve must leave low priority at least one slot of the burst")
        self._keys = (key, pause_key)
        self._tally = tally
        self._pause_key = pause_key
        self._interval_ms = 1000.0 / rate_per_s
        self._tau_ms: dict[Priority, float] = {
            "high": burst * self._interval_ms,
            "low": (burst - reserve) * self._interval_ms,
        }
        self._acquire_script = redis.register_script(_ACQUIRE_LUA)
        self._pause_script = redis.register_script(_PAUSE_LUA)

    async def acquire(self, priority: Priority = "low", max_wait_s: float | None = None) -> float:
        """Wait for a slot and take it; return the seconds waited.

        Raises ``RateBudgetTimeout`` instead of waiting longer than ``max_wait_s``.
        """
        started = time.monotonic()
        queue = "1" if priority == "high" else "0"
        while True:
            waited = time.monotonic() - started
            left = None if max_wait_s is None else max(max_wait_s - waited, 0.0)
            granted, wait_ms = await self._acquire_script(
                keys=self._keys if self._tally is None else (*self._keys, self._tally()),
                args=(
                    self._interval_ms,
                    self._tau_ms[priority],
                    queue,
                    -1 if left is None else left * 1000,
                ),
            )
            wait = float(wait_ms) / 1000
            if int(granted):
                if wait > 0:
                    await asyncio.sleep(wait)
                    # A 429 may have paused everyone while this reservation slept; the slot is
                    # forfeited rather than spent against a server that just refused us.
                    if await self._pause_left() > 0:
                        continue
                return time.monotonic() - started
            if left is not None and wait > left:
                raise RateBudgetTimeout(waited + wait)
            # Jitter keeps the waiting low-priority callers from all retrying at the same instant.
            await asyncio.sleep(wait + random.uniform(0, self._interval_ms / 1000))

    async def pause_until(self, epoch_s: float) -> None:
        """Let nobody take a slot before ``epoch_s`` (a longer pause already set is kept)."""
        horizon = time.time() + MAX_PAUSE_S
        await self._pause_script(keys=(self._pause_key,), args=(min(epoch_s, horizon) * 1000, "0"))

    async def pause_for(self, seconds: float) -> None:
        """Let nobody take a slot for ``seconds``, measured on the Redis server's clock."""
        await self._pause_script(
            keys=(self._pause_key,), args=(min(seconds, MAX_PAUSE_S) * 1000, "1")
        )

    async def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Pause when Monite's rate-limit headers say its quota is spent.

        ``headers`` must look names up case-insensitively (``httpx.Headers``) or use lower case.

        ``X-RateLimit-Remaining-Second: 0`` pauses until the next second; ``RateLimit-Remaining: 0``
        pauses for ``RateLimit-Reset`` (delta seconds, or an epoch timestamp).
        """
        per_second = _number(headers.get("x-ratelimit-remaining-second"))
        if per_second is not None and per_second <= 0:
            await self.pause_for(1.0)
        remaining = _number(headers.get("ratelimit-remaining"))
        if remaining is None or remaining > 0:
            return
        reset = _number(headers.get("ratelimit-reset"))
        if reset is None:
            await self.pause_for(1.0)
        elif reset > _EPOCH_THRESHOLD:
            await self.pause_until(reset)
        else:
            await self.pause_for(reset)

    async def _pause_left(self) -> float:
        left_ms = await self._pause_script(keys=(self._pause_key,), args=(0, "1"))
        return float(left_ms) / 1000


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None
