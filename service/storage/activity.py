"""What the console reads besides watches: activity counts, receivers, workers, search entries.

The counts are written where the events happen, inside the scripts that already run there (a
delivery attempt and a state change in the compare-and-set, a Monite request in the rate budget's
script), so the hot paths pay no extra round trip. Reading is bounded: an hour is 60 minute
hashes, the receivers' hour six ten-minute hashes, a page of a troubled set one range.
"""

from __future__ import annotations

import os
import socket
from typing import Final, Literal

import msgspec
from redis.asyncio import Redis

from service.clock import wall_ms
from service.domain.activity import minute_of
from service.storage.keys import Keys
from service.storage.watches import RECEIVER_SLOT_MS, normalized_number

# A worker that has not beaten for this long is shown as gone (it beats every HEARTBEAT_S).
HEARTBEAT_S: Final = 5.0
WORKER_GONE_MS: Final = 30_000
# Workers not seen for a day are forgotten.
_WORKER_FORGET_MS: Final = 86_400_000

Scope = Literal["host", "client"]


class WorkerBeat(msgspec.Struct, frozen=True):
    """A worker process and when it last beat (ms)."""

    name: str
    seen_ms: int


class ReceiverCounts(msgspec.Struct, frozen=True):
    """A callback host's delivery attempts over the slots read."""

    host: str
    ok: int
    failed: int
    latency_ms_sum: int

    @property
    def attempts(self) -> int:
        """Every attempt, acknowledged or not."""
        return self.ok + self.failed


class Activity:
    """The activity counts and indexes of one key prefix."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def tally_key(self) -> str:
        """The hash counting this minute (what the rate budget's script increments)."""
        return self.keys.activity(minute_of(wall_ms()))

    async def count(self, field: str, by: int = 1) -> None:
        """Count ``field`` in this minute's hash (kept two hours)."""
        key = self.tally_key()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, field, by)
            pipe.expire(key, 7200)
            await pipe.execute()

    async def minutes(self, now_ms: int, count: int = 60) -> list[dict[str, int]]:
        """The last ``count`` minutes' counts, oldest first (the current minute last)."""
        last = minute_of(now_ms)
        async with self.redis.pipeline(transaction=False) as pipe:
            for minute in range(last - count + 1, last + 1):
                pipe.hgetall(self.keys.activity(minute))
            rows = await pipe.execute()
        return [{k.decode(): int(v) for k, v in row.items()} for row in rows]

    async def receivers(self, now_ms: int, slots: int = 6) -> list[ReceiverCounts]:
        """Every callback host attempted within the last ``slots`` ten-minute slots, with its
        counts over them, busiest first."""
        last = now_ms // RECEIVER_SLOT_MS
        async with self.redis.pipeline(transaction=False) as pipe:
            for slot in range(last - slots + 1, last + 1):
                pipe.hgetall(self.keys.receiver_activity(slot))
            rows = await pipe.execute()
        totals: dict[str, dict[str, int]] = {}
        for row in rows:
            for field, value in row.items():
                host, _, kind = field.decode().rpartition("\t")
                counts = totals.setdefault(host, {})
                counts[kind] = counts.get(kind, 0) + int(value)
        found = [
            ReceiverCounts(
                host=host,
                ok=c.get("ok", 0),
                failed=c.get("failed", 0),
                latency_ms_sum=c.get("ms", 0),
            )
            for host, c in totals.items()
        ]
        return sorted(found, key=lambda r: (-r.attempts, r.host))

    async def known_receivers(self, limit: int = 200) -> list[tuple[str, int]]:
        """Callback hosts by their latest attempt (ms), most recent first."""
        rows = await self.redis.zrevrange(self.keys.receivers(), 0, limit - 1, withscores=True)
        return [(host.decode(), int(score)) for host, score in rows]

    async def troubled(
        self, scope: Scope, name: str, *, since_ms: int, until_ms: int, limit: int
    ) -> list[tuple[str, int]]:
        """(watch id, time of its latest failed attempt in ms) of a host or client, within the
        range, newest first, at most ``limit`` (they may since have been delivered: the caller
        checks)."""
        rows = await self.redis.zrevrangebyscore(
            self.keys.troubled(scope, name), until_ms, since_ms, start=0, num=limit, withscores=True
        )
        return [(i.decode(), int(score)) for i, score in rows]

    async def count_troubled(self, scope: Scope, name: str, *, since_ms: int) -> int:
        """How many watches of a host or client had a failed attempt since ``since_ms``."""
        return int(await self.redis.zcount(self.keys.troubled(scope, name), since_ms, "+inf"))

    async def find(self, kind: Literal["task", "number"], value: str, limit: int = 50) -> list[str]:
        """Watch ids filed under a Monite task id or a document number (possibly expired)."""
        if kind == "number":
            value = normalized_number(value)
            if not value:
                return []
        members = await self.redis.srandmember(self.keys.lookup(kind, value), limit)  # type: ignore[misc]
        return sorted(m.decode() for m in members)

    async def oldest_open(self) -> tuple[str, int] | None:
        """The unfinished watch created first, and when (ms)."""
        rows = await self.redis.zrange(self.keys.open_watches(), 0, 0, withscores=True)
        return None if not rows else (rows[0][0].decode(), int(rows[0][1]))

    async def beat(self, worker: str) -> None:
        """Record that ``worker`` is alive now, and forget workers gone for a day."""
        now = wall_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.workers(), {worker: now})
            pipe.zremrangebyscore(self.keys.workers(), "-inf", now - _WORKER_FORGET_MS)
            await pipe.execute()

    async def workers(self) -> list[WorkerBeat]:
        """Worker processes seen within a day, most recently seen first."""
        rows = await self.redis.zrevrange(self.keys.workers(), 0, 199, withscores=True)
        return [WorkerBeat(name=n.decode(), seen_ms=int(s)) for n, s in rows]


def worker_name() -> str:
    """This process as the console lists it: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"
