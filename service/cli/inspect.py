"""``ocr-relay inspect``: a watch, its history, its event and its deliveries, as JSON.

The watch is named by its id, by its event's id (``--event``), or by the Monite task it follows
(``--task``: every watch of the task, newest first). Read-only: nothing in Redis changes.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Final

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.api.bodies import watch_out
from service.domain.watch import Watch
from service.queue import connect
from service.settings import Settings, without_credentials
from service.storage import Store
from service.storage.keys import Keys

# How many of each client's newest watches `--task` reads to find the task's finished watches
# (a finished watch leaves the task's set of live watches).
TASK_SCAN_BUDGET: Final = 10_000


class Inspection(msgspec.Struct, frozen=True):
    """Everything the service knows about one watch."""

    watch: object
    deliveries: list[object]
    event: object | None


async def _inspection(store: Store, watch: Watch) -> Inspection:
    event = await store.events.get(watch.event_id) if watch.event_id else None
    return Inspection(
        watch=watch_out(watch, transitions=await store.watches.transitions(watch.id)),
        deliveries=list(await store.events.attempts(watch.id)),
        event=None if event is None else msgspec.json.decode(event.body),
    )


async def _task_watches(redis: Redis, keys: Keys, store: Store, task_id: str) -> list[Watch]:
    """The task's live watches and the finished ones among each client's newest."""
    live = await redis.smembers(keys.task_watches(task_id))  # type: ignore[misc]
    found = {
        w.id: w for w in await store.watches.get_many([m.decode() for m in live]) if w is not None
    }
    # The client's name sits between the fixed parts of its index key, which keys.py alone spells.
    prefix, suffix = keys.client_watches("\0").split("\0")
    async for index in redis.scan_iter(match=keys.client_watches("*"), count=1000):
        client = index.decode().removeprefix(prefix).removesuffix(suffix)
        page = await store.watches.list_watches(
            client, task_id=task_id, limit=TASK_SCAN_BUDGET, scan_budget=TASK_SCAN_BUDGET
        )
        found.update((w.id, w) for w in page.items)
    return sorted(found.values(), key=lambda w: w.created_at, reverse=True)


async def _inspect(
    settings: Settings, watch_id: str | None, task_id: str | None, event_id: str | None
) -> Inspection | list[Inspection] | None:
    keys = Keys(settings.key_prefix)
    redis = connect(settings)
    try:
        store = Store(redis, keys, settings.watch_retention_s)
        if task_id is not None:
            watches = await _task_watches(redis, keys, store, task_id)
            return [await _inspection(store, w) for w in watches] or None
        if event_id is not None:
            event = await store.events.get(event_id)
            watch_id = None if event is None else event.watch_id
        watch = None if watch_id is None else await store.watches.get(watch_id)
        return None if watch is None else await _inspection(store, watch)
    finally:
        await redis.aclose(close_connection_pool=True)


def run_inspect(
    settings: Settings,
    watch_id: str | None = None,
    *,
    task_id: str | None = None,
    event_id: str | None = None,
) -> int:
    """Print the inspection (a list for ``task_id``); 1 with a one-line reason when nothing is
    found or Redis cannot be read."""
    try:
        found = asyncio.run(_inspect(settings, watch_id, task_id, event_id))
    except (RedisError, OSError) as exc:
        where = without_credentials(settings.redis_url)
        print(f"ocr-relay: cannot read Redis at {where}: {exc}", file=sys.stderr)
        return 1
    if found is None:
        if task_id is not None:
            missing = f"no watch follows task {task_id!r}"
        elif event_id is not None:
            missing = f"no event {event_id!r} (or its watch has expired)"
        else:
            missing = f"no watch {watch_id!r}"
        print(f"ocr-relay: {missing}", file=sys.stderr)
        return 1
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(found)).decode() + "\n")
    return 0
