"""``ocr-relay inspect WATCH_ID``: a watch, its history, its event and its deliveries, as JSON."""

from __future__ import annotations

import asyncio
import sys

import msgspec
from redis.exceptions import RedisError

from service.api.schemas import watch_out
from service.keys import Keys
from service.queue import connect
from service.settings import Settings, without_credentials
from service.store import Store


class Inspection(msgspec.Struct, frozen=True):
    """Everything the service knows about one watch."""

    watch: object
    deliveries: list[object]
    event: object | None


async def _inspect(settings: Settings, watch_id: str) -> Inspection | None:
    keys = Keys(settings.key_prefix)
    redis = connect(settings)
    try:
        store = Store(redis, keys, settings.watch_retention_s)
        watch = await store.get(watch_id)
        if watch is None:
            return None
        event = await store.get_event(watch.event_id) if watch.event_id else None
        return Inspection(
            watch=watch_out(watch, transitions=await store.transitions(watch_id)),
            deliveries=list(await store.attempts(watch_id)),
            event=None if event is None else msgspec.json.decode(event.body),
        )
    finally:
        await redis.aclose(close_connection_pool=True)


def run_inspect(settings: Settings, watch_id: str) -> int:
    """Print the inspection; 1 with a one-line reason when the watch or Redis is missing."""
    try:
        found = asyncio.run(_inspect(settings, watch_id))
    except (RedisError, OSError) as exc:
        where = without_credentials(settings.redis_url)
        print(f"ocr-relay: cannot read Redis at {where}: {exc}", file=sys.stderr)
        return 1
    if found is None:
        print(f"ocr-relay: no watch {watch_id!r}", file=sys.stderr)
        return 1
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(found)).decode() + "\n")
    return 0
