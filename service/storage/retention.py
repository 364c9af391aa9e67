"""What outlives a finished watch, swept once the watch has expired; and the cluster's counts.

A finished watch's own keys expire together (``service.storage.watches`` sets their TTL in the
script that finishes it). What lives elsewhere — its client's listing entry, its share of the
``current:<state>`` count — is remembered in the ``expiring`` set and swept here by the
reconciler, boundedly and safely from several processes at once.
"""

from __future__ import annotations

import time
from typing import Final

from redis.asyncio import Redis

from service.storage.keys import Keys

# How long one reconcile run may sweep expired watches: at ~1,000 finishes/s sustained, the sweep
# must remove as many per second (bench/sweep.py measures it).
SWEEP_BUDGET_S: Final = 2.0

# Sweeps up to ARGV[2] expiring entries due by ARGV[1] (KEYS: expiring set, stats): an entry
# is "watch key\nlisting index\nlisting member\nstate". Each entry is taken out by one sweep
# only (ZREM answers 1 once), so concurrent sweeps never count a watch twice. Answers {entries
# looked at, watches swept}.
_SWEEP = r"""
local entries = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
local swept = 0
for _, entry in ipairs(entries) do
  local watch, index, member, state = string.match(entry, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n?(.*)$')
  local ttl = redis.call('PTTL', watch)
  if ttl >= 0 then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + ttl, entry)
  elseif redis.call('ZREM', KEYS[1], entry) == 1 and ttl == -2 then
    redis.call('ZREM', index, member)
    if state ~= '' then redis.call('HINCRBY', KEYS[2], 'current:' .. state, -1) end
    swept = swept + 1
  end
end
return {#entries, swept}
"""


class Retention:
    """The expiring set and the stats hash of one key prefix."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._sweep = redis.register_script(_SWEEP)

    async def sweep_expired(
        self, *, now_ms: int, batch: int = 200, budget_s: float = SWEEP_BUDGET_S
    ) -> int:
        """Forget what outlives the watches whose records have expired; returns how many.

        Their listing entries go (listing prunes what it meets, but a client that never lists
        would keep them forever) and so does their share of ``current:<state>``, so the watch
        gauge counts watches that exist. A watch redelivered meanwhile has no expiry and is left
        (its next finish adds it again); one whose expiry moved is looked at again then. Sweeps
        ``batch`` entries per round trip until none is left or ``budget_s`` has passed.
        """
        swept = 0
        started = time.monotonic()
        keys = [self.keys.expiring(), self.keys.stats()]
        while True:
            done, count = await self._sweep(keys=keys, args=[now_ms, batch])
            swept += int(count)
            if int(done) < batch or time.monotonic() - started > budget_s:
                return swept

    async def state_counts(self) -> dict[str, int]:
        """``current:<state>`` (watches in it now) and ``entered:<state>`` (ever entered) counts."""
        raw = await self.redis.hgetall(self.keys.stats())  # type: ignore[misc]
        return {k.decode(): int(v) for k, v in raw.items()}

    async def record_reconcile(
        self, reconciled: dict[str, int], overdue_ms: dict[str, int]
    ) -> None:
        """Count the steps a reconcile run sent on, and set the overdue gauges it measured."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for step, count in reconciled.items():
                if count:
                    pipe.hincrby(self.keys.stats(), f"reconciled:{step}", count)
            pipe.hset(
                self.keys.stats(),
                mapping={f"overdue_ms:{step}": ms for step, ms in overdue_ms.items()},
            )
            await pipe.execute()
