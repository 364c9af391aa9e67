"""The only module that knows arq's enqueue API.

Jobs carry ids only. Their arq job ids are deterministic (and carry our key prefix), so enqueueing
the same thing twice is a no-op: a poll round per group and time slot, a delivery per attempt.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from arq.connections import ArqRedis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from service.sentinel_url import parse_sentinel_url
from service.settings import Settings
from service.storage.keys import Keys

ROUND_SLOT_MS: Final = 250
URGENT_SLOT_MS: Final = 10
POLL_ROUND: Final = "poll_round"
DELIVER: Final = "deliver"
DELIVER_BATCH: Final = "deliver_batch"
# Seconds a command waits for a free pooled connection before failing: a burst of concurrent
# commands (a batch of deliveries) queues instead of failing at the pool's limit.
_POOL_WAIT_S: Final = 20.0
_POOL_SIZE: Final = 64


def connect(settings: Settings) -> ArqRedis:
    """One Redis client for the store and the queue (arq's client is a redis-py client).

    Every command and connection attempt gives up after ``REDIS_TIMEOUT_S``: without a bound, a
    Redis that hangs (paused, partitioned) would hang API requests and stall workers for good.
    A ``redis+sentinel://`` URL finds the primary through Sentinel, again after a failover.
    """
    timeouts = {
        "socket_connect_timeout": settings.redis_timeout_s,
        "socket_timeout": settings.redis_timeout_s,
    }
    pool_options = {"max_connections": _POOL_SIZE, "timeout": _POOL_WAIT_S, **timeouts}
    sentinel = parse_sentinel_url(settings.redis_url)
    pool: BlockingConnectionPool
    if sentinel is None:
        pool = BlockingConnectionPool.from_url(settings.redis_url, **pool_options)
    else:
        asked = {**timeouts, "password": sentinel.sentinel_password}
        manager = Sentinel(sentinel.sentinels, sentinel_kwargs=asked)  # type: ignore[no-untyped-call]
        pool = _BlockingSentinelPool(
            sentinel.service_name,
            manager,
            db=sentinel.db,
            username=sentinel.username,
            password=sentinel.password,
            **pool_options,
        )
    return ArqRedis(pool_or_conn=pool, default_queue_name=Keys(settings.key_prefix).queue())


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool, waiting for a free connection like ours instead of failing at the limit."""

    def __init__(self, service_name: str, manager: Sentinel, **options: Any) -> None:
        super().__init__(service_name, manager, **options)  # type: ignore[no-untyped-call]

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the pool's connections; closing it for good closes those to the sentinels too."""
        await super().disconnect(inuse_connections)
        if inuse_connections:  # only a master switch drops idle connections alone
            for client in self.sentinel_manager.sentinels:
                await client.connection_pool.disconnect()


class Queue:
    """Enqueues our jobs on arq's queue."""

    def __init__(self, redis: ArqRedis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def schedule_round(self, group: str, at_ms: int, *, after_slot: int | None = None) -> int:
        """Make sure a poll round of ``group`` runs at ``at_ms`` (rounded up to a slot).

        Returns the slot used. A running round passes its own slot as ``after_slot`` so that the
        next one gets a later job id (arq refuses an id that is still running).
        """
        slot = -(-at_ms // ROUND_SLOT_MS)
        if after_slot is not None and slot <= after_slot:
            slot = after_slot + 1
        await self.redis.enqueue_job(
            POLL_ROUND,
            group,
            slot,
            _job_id=self.keys.job_id("round", group, str(slot)),
            _defer_until=datetime.fromtimestamp(slot * ROUND_SLOT_MS / 1000, UTC),
        )
        return slot

    async def schedule_round_now(self, group: str) -> None:
        """Run a poll round of ``group`` at once (push fast path).

        Its own job id, unique per 10 ms: a push must not wait for a slot that a scheduled round
        already holds, and a burst of pushes still makes few jobs.
        """
        now_ms = int(time.time() * 1000)
        await self.redis.enqueue_job(
            POLL_ROUND,
            group,
            now_ms // ROUND_SLOT_MS,
            _job_id=self.keys.job_id("round-now", group, str(now_ms // URGENT_SLOT_MS)),
        )

    async def schedule_delivery(
        self, watch_id: str, series: int, attempt: int, delay_s: float, *, hurried: int = 0
    ) -> bool:
        """Run delivery attempt ``attempt`` of series ``series`` of a watch after ``delay_s``.

        False when that attempt's job is already queued (or running): nothing new was made.
        ``hurried`` (the watch's version when an attempt was brought forward) makes a job of its
        own, as the attempt's job is already queued for later. That later job still runs then:
        it finds the watch finished (nothing to do) or makes its next attempt, no earlier than
        the one it was queued for was due.
        """
        parts = (watch_id, str(series), str(attempt), *((f"v{hurried}",) if hurried else ()))
        job = await self.redis.enqueue_job(
            DELIVER,
            watch_id,
            _job_id=self.keys.job_id("deliver", *parts),
            _defer_by=max(0.0, delay_s),
        )
        return job is not None

    async def deliver_now(self, watch_ids: Sequence[str]) -> None:
        """Run the first delivery attempts of several watches at once, in one job.

        One job per poll batch instead of one per watch: at a thousand finished tasks a second,
        the queue's own work per job would otherwise cost more than the deliveries.
        """
        if not watch_ids:
            return
        digest = hashlib.blake2b("\n".join(watch_ids).encode(), digest_size=12).hexdigest()
        await self.redis.enqueue_job(
            DELIVER_BATCH, list(watch_ids), _job_id=self.keys.job_id("deliver-batch", digest)
        )
