"""Events and the delivery attempt log in Redis.

An event is stored once, as the exact bytes that are signed and delivered (every attempt and every
redelivery sends the same bytes under the same ``webhook-id``). The attempt log of a watch is a list
that lives exactly as long as the watch: an attempt is appended with the watch's own expiry, and
not at all once the watch is gone.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from redis.asyncio import Redis

from service.domain.delivery import AttemptResult
from service.storage.keys import Keys

_encode = msgspec.msgpack.Encoder().encode

# Appends a delivery attempt (ARGV[1]) to the log (KEYS[2]) of a watch (KEYS[1]) that exists,
# with the watch's expiry: an attempt settled after a cancel must not outlive the watch.
_APPEND_ATTEMPT = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""


class EventRecord(msgspec.Struct, frozen=True):
    """An event as stored: its exact body bytes, as signed and delivered."""

    id: str
    watch_id: str
    type: str
    body: bytes
    created_at: datetime


class LoggedAttempt(AttemptResult, frozen=True, kw_only=True):
    """One delivery attempt as the attempt log keeps it: what came of it, which attempt of which
    series of which event it was, and when the next one is due (None: there is none)."""

    event_id: str
    series: int
    attempt: int
    next_attempt_at: datetime | None = None


_event_decoder = msgspec.msgpack.Decoder(EventRecord)
_attempt_decoder = msgspec.msgpack.Decoder(LoggedAttempt)


class EventLog:
    """Events and attempt logs of one key prefix."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._append_attempt = redis.register_script(_APPEND_ATTEMPT)

    async def get(self, event_id: str) -> EventRecord | None:
        """An event, or None when unknown."""
        raw = await self.redis.get(self.keys.event(event_id))
        return None if raw is None else _event_decoder.decode(raw)

    async def log_attempt(self, watch_id: str, attempt: LoggedAttempt) -> None:
        """Append to a watch's delivery attempt log (nothing once the watch is gone)."""
        keys = [self.keys.watch(watch_id), self.keys.attempts(watch_id)]
        await self._append_attempt(keys=keys, args=[_encode(attempt)])

    async def attempts(self, watch_id: str) -> list[LoggedAttempt]:
        """The delivery attempt log of a watch, oldest first."""
        raws = await self.redis.lrange(self.keys.attempts(watch_id), 0, -1)  # type: ignore[misc]
        return [_attempt_decoder.decode(r) for r in raws]
