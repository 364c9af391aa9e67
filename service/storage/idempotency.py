"""Idempotency-Keys in Redis: a request's key names the watch it made, or says it is at work.

A registration sets its key in the script that stores the watch (``service.storage.watches``). A
request that must act before it registers (``POST /v1/documents`` creates the Monite task first)
holds its key here while it acts: a concurrent retry is told to wait, a later one gets the watch.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis

from service.storage.keys import Keys

# The value of an Idempotency-Key held by a request that acts before it registers (it creates the
# Monite task first); it becomes the watch id once the watch is stored.
IDEMPOTENCY_PENDING: Final = "pending"

# Idempotency-Key of a request that acts before registering (KEYS[1]; ARGV[1]: the pending value,
# ARGV[2]: seconds to hold it): {1, ''} once held, else {0, what it holds}.
_CLAIM_IDEMPOTENCY = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return {1, ''} end
return {0, redis.call('GET', KEYS[1]) or ''}
"""

# Hold an Idempotency-Key (KEYS[1]) that still names the expired watch ARGV[1]: 1 if taken.
_TAKE_OVER_IDEMPOTENCY = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

# Let go of a held Idempotency-Key (KEYS[1]) only while it still holds the pending value.
_RELEASE_IDEMPOTENCY = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


class IdempotencyInProgress(Exception):
    """Another request holds this Idempotency-Key and has not finished yet."""


class IdempotencyKeys:
    """The Idempotency-Keys of one key prefix."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._claim = redis.register_script(_CLAIM_IDEMPOTENCY)
        self._release = redis.register_script(_RELEASE_IDEMPOTENCY)
        self._take_over = redis.register_script(_TAKE_OVER_IDEMPOTENCY)

    async def claim(self, key: str, hold_s: int) -> str | None:
        """Hold an Idempotency-Key for ``hold_s`` while a request acts before registering.

        Returns None once this request holds it, or the id of the watch an earlier request made
        with it; raises ``IdempotencyInProgress`` while another request holds it.
        """
        held, value = await self._claim(keys=[key], args=[IDEMPOTENCY_PENDING, hold_s])
        if held:
            return None
        if value == IDEMPOTENCY_PENDING.encode():
            raise IdempotencyInProgress(key)
        watch_id: str = value.decode()
        if await self.redis.exists(self.keys.watch(watch_id)):
            return watch_id
        # The earlier watch expired after its retention: take the key over, unless a concurrent
        # request has just done so.
        args: list[str | int] = [watch_id, IDEMPOTENCY_PENDING, hold_s]
        if await self._take_over(keys=[key], args=args):
            return None
        raise IdempotencyInProgress(key)

    async def release(self, key: str) -> None:
        """Let go of a held Idempotency-Key whose request made nothing (so a retry may act)."""
        await self._release(keys=[key], args=[IDEMPOTENCY_PENDING])
