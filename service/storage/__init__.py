"""Everything ocr-relay keeps, in Redis under one key prefix; a module per concern.

- ``keys``: every key name, in one place.
- ``watches``: watch records and the compare-and-set that moves a watch forward, writing its
  next step in the same script (the "nothing stranded" invariant).
- ``schedule``: the next-step indexes (poll-due sets per group, the delivery index), claims,
  leases, round locks, pushes.
- ``events``: the exact event bytes and the delivery attempt log.
- ``idempotency``: Idempotency-Keys held by requests that act before they register.
- ``retention``: what outlives a finished watch, swept once it expired; the cluster's counts.
- ``duplicates``: the first recognized document of each fingerprint, per client (the hint).
- ``activity``: what the console reads: minute counts, receivers, workers, search entries.
- ``sessions``: operators signed in to the console.

``Store`` bundles them for one prefix; callers name the part (``store.watches.get(…)``,
``store.schedule.claim_due(…)``), so a call says which concern it touches.
"""

from __future__ import annotations

from redis.asyncio import Redis

from service.storage.activity import Activity
from service.storage.duplicates import DuplicateIndex
from service.storage.events import EventLog
from service.storage.idempotency import IdempotencyKeys
from service.storage.keys import Keys
from service.storage.retention import Retention
from service.storage.schedule import Schedule
from service.storage.sessions import ConsoleSessions
from service.storage.watches import WatchRecords

DEFAULT_RETENTION_S = 30 * 86400


class Store:
    """The storage of one key prefix, a part per concern, on one Redis client."""

    def __init__(self, redis: Redis, keys: Keys, retention_s: int = DEFAULT_RETENTION_S) -> None:
        self.redis = redis
        self.keys = keys
        self.events = EventLog(redis, keys)
        self.watches = WatchRecords(redis, keys, self.events, retention_s)
        self.schedule = Schedule(redis, keys)
        self.idempotency = IdempotencyKeys(redis, keys)
        self.retention = Retention(redis, keys)
        self.duplicates = DuplicateIndex(redis, keys, retention_s)
        self.activity = Activity(redis, keys)
        self.sessions = ConsoleSessions(redis, keys)
