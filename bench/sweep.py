"""How fast the reconciler sweeps expired watches, against the rate watches can finish.

Run: ``.venv/bin/python bench/sweep.py [REDIS_URL]`` (default ``redis://127.0.0.1:6379/9``; it
uses a key prefix of its own and deletes it afterwards). It fills the ``expiring`` set with N
entries of watches that have expired (their records gone, their listing entries and state counts
left), then times ``Store.sweep_expired`` as one reconcile run calls it (200 entries per round
trip, within its 2 s budget) until all are swept. The baseline in the same run is the sweep as it
was before issue 12: one round trip of 1,000 entries per reconcile run (every 5 s), whatever the
backlog — 200 watches/s, below the ~1,000 finishes/s the README claims the service sustains.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

from redis.asyncio import Redis

from service.storage import Store
from service.storage.keys import Keys

ENTRIES = 50_000
RECONCILE_EVERY_S = 5
OLD_PER_RUN = 1_000


async def fill(store: Store, count: int) -> None:
    """``count`` expired watches: an expiring entry, a listing entry, a state count each."""
    index = store.keys.client_watches("bench")
    async with store.redis.pipeline(transaction=False) as pipe:
        for n in range(count):
            member = f"{n:015d}:wat_{n}"
            entry = f"{store.keys.watch(f'wat_{n}')}\n{index}\n{member}\ndelivered"
            pipe.zadd(store.keys.expiring(), {entry: n})
            pipe.zadd(index, {member: 0})
        pipe.hset(store.keys.stats(), "current:delivered", count)
        await pipe.execute()


async def main(url: str) -> None:
    redis = Redis.from_url(url)
    store = Store(redis, Keys(f"bench-sweep-{uuid.uuid4().hex[:8]}:"))
    try:
        await fill(store, ENTRIES)
        started = time.perf_counter()
        runs = 0
        while await store.redis.zcard(store.keys.expiring()):
            await store.retention.sweep_expired(now_ms=ENTRIES + 1)
            runs += 1
        elapsed = time.perf_counter() - started
        left = await store.redis.zcard(store.keys.client_watches("bench"))
        counted = int(await store.redis.hget(store.keys.stats(), "current:delivered") or 0)
        assert (left, counted) == (0, 0), (left, counted)
        swept_per_s = ENTRIES / elapsed
        print(f"{ENTRIES} expired watches swept in {elapsed:.2f} s over {runs} reconcile run(s)")
        print(f"  sweep speed:               {swept_per_s:10,.0f} watches/s while it runs")
        per_run = swept_per_s * 2.0
        print(f"  sustained (2 s per 5 s):   {per_run / RECONCILE_EVERY_S:10,.0f} watches/s")
        print(f"  baseline (1,000 per run):  {OLD_PER_RUN / RECONCILE_EVERY_S:10,.0f} watches/s")
    finally:
        keys = [k async for k in redis.scan_iter(match=store.keys.pattern(), count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/9"))
