"""The arq job functions called directly, as the worker calls them (ctx holds the services)."""

from __future__ import annotations

from arq.connections import ArqRedis

from service.domain.watch import WatchState
from service.queue import Queue
from service.store import Store
from tests.test_store import become, create, gone, keys_of, make_watch
from workers.jobs import reconcile


async def test_reconcile_sweeps_what_expired_watches_left_behind(store: Store) -> None:
    store.retention_s = 1
    watch, _ = await create(store, make_watch())
    await store.update(watch.id, become(WatchState.DELIVERED))
    await gone(store, watch)
    queue = Queue(ArqRedis(connection_pool=store.redis.connection_pool), store.keys)
    await reconcile({"store": store, "queue": queue})
    assert await keys_of(store, watch) == []
