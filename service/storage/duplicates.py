"""The duplicate hint in Redis: the first recognized document of each fingerprint, per API client.

One script looks the fingerprint up and, when it is new, claims it for this document's watch and
event, with the watch retention as its lifetime: one round trip per recognized document, and the
hint keeps pointing at the first document, never at a later duplicate. Keys are per client, so a
hint never crosses tenants; a fingerprint is a digest, so no key carries a seller's name.
"""

from __future__ import annotations

from redis.asyncio import Redis

from service.storage.keys import Keys

# KEYS[1]: the fingerprint's key; ARGV[1]: "watch id\\nevent id" of this document, ARGV[2]: TTL s.
# Answers the earlier value, or nothing when this document is the first (and now claims it).
_FIRST = """
local earlier = redis.call('GET', KEYS[1])
if earlier then return earlier end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""


class DuplicateIndex:
    """The fingerprints of one key prefix."""

    def __init__(self, redis: Redis, keys: Keys, retention_s: int) -> None:
        self.keys = keys
        self.retention_s = retention_s
        self._first = redis.register_script(_FIRST)

    async def first_of(
        self, client: str, fingerprint: str, watch_id: str, event_id: str
    ) -> tuple[str, str] | None:
        """The (watch id, event id) of ``client``'s earlier document with ``fingerprint``, or
        None when this one (``watch_id``'s ``event_id``) is the first and is now remembered."""
        earlier = await self._first(
            keys=[self.keys.duplicate(client, fingerprint)],
            args=[f"{watch_id}\n{event_id}", self.retention_s],
        )
        if earlier is None:
            return None
        first_watch, _, first_event = earlier.decode().partition("\n")
        return first_watch, first_event
