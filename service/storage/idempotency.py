"""Idempotency-Keys in Redis: a request's key names the watch it made, or says it is at work.

A registration sets its key in the script that stores the watch (``service.storage.watches``). A
request that must act before it registers (``POST /v1/documents`` creates the Monite task first)
holds its key here while it acts: a concurrent retry is told to wait, a later one gets the watch.
"""

from __future__ import annotations

from typing import Final

import msgspec
from redis.asyncio import Redis

from service.storage.keys import Keys

# The value of an Idempotency-Key held by a request that acts before it registers (it creates the
# Monite task first); "task:<task id>:<request digest>" once that task exists (a retry of a request
# whose registration then failed reuses the task instead of making a second one); the watch id
# once the watch is stored.
IDEMPOTENCY_PENDING: Final = "pending"
TASK_PREFIX: Final = "task:"
# How long a key remembers a Monite task no watch was registered for (the client's retry window).
TASK_HOLD_S: Final = 86_400

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

# Remember the Monite task (ARGV[2]) a request holding its Idempotency-Key (KEYS[1], still at the
# pending value ARGV[1]) made, for ARGV[3] seconds.
_REMEMBER_TASK = """
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


class Claim(msgspec.Struct, frozen=True):
    """What an Idempotency-Key holds for a request that claimed it: the watch an earlier request
    made, or the Monite task (and that request's digest) it made without a watch; neither once
    this request holds the key."""

    watch_id: str | None = None
    task_id: str | None = None
    task_digest: str | None = None


class IdempotencyKeys:
    """The Idempotency-Keys of one key prefix."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._claim = redis.register_script(_CLAIM_IDEMPOTENCY)
        self._release = redis.register_script(_RELEASE_IDEMPOTENCY)
        self._take_over = redis.register_script(_TAKE_OVER_IDEMPOTENCY)
        self._remember_task = redis.register_script(_REMEMBER_TASK)

    async def claim(self, key: str, hold_s: int) -> Claim:
        """Hold an Idempotency-Key for ``hold_s`` while a request acts before registering.

        Returns an empty ``Claim`` once this request holds it, else what an earlier request made
        with it (a watch, or a Monite task it could not register); raises
        ``IdempotencyInProgress`` while another request holds it.
        """
        held, raw = await self._claim(keys=[key], args=[IDEMPOTENCY_PENDING, hold_s])
        if held:
            return Claim()
        value: str = raw.decode()
        if value == IDEMPOTENCY_PENDING:
            raise IdempotencyInProgress(key)
        if value.startswith(TASK_PREFIX):
            task_id, _, digest = value.removeprefix(TASK_PREFIX).partition(":")
            return Claim(task_id=task_id, task_digest=digest or None)
        if await self.redis.exists(self.keys.watch(value)):
            return Claim(watch_id=value)
        # The earlier watch expired after its retention: take the key over, unless a concurrent
        # request has just done so.
        args: list[str | int] = [value, IDEMPOTENCY_PENDING, hold_s]
        if await self._take_over(keys=[key], args=args):
            return Claim()
        raise IdempotencyInProgress(key)

    async def remember_task(self, key: str, task_id: str, digest: str | None) -> None:
        """The request holding ``key`` made Monite task ``task_id``: a retry reuses it."""
        value = f"{TASK_PREFIX}{task_id}:{digest or ''}"
        await self._remember_task(keys=[key], args=[IDEMPOTENCY_PENDING, value, TASK_HOLD_S])

    async def release(self, key: str) -> None:
        """Let go of a held Idempotency-Key whose request made nothing (so a retry may act)."""
        await self._release(keys=[key], args=[IDEMPOTENCY_PENDING])
