"""Every Redis key the service spells, in one place.

All keys start with the configured prefix (``REDIS_KEY_PREFIX``, default ``ocr-relay:``) so that a
deployment, or a test, owns a slice of a shared Redis and can remove it with one SCAN pattern.
arq's own keys (``arq:job:<id>`` …) carry the prefix through the job ids built here.
"""

from __future__ import annotations

import hashlib
from typing import Final


class Keys:
    """Key names for one prefix. Values are msgspec-encoded unless a comment says otherwise."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix: Final = prefix

    # -- watches -----------------------------------------------------------------------------
    def watch(self, watch_id: str) -> str:
        """The watch record (msgpack)."""
        return f"{self.prefix}watch:{watch_id}"

    def watch_transitions(self, watch_id: str) -> str:
        """List of state transitions of one watch (msgpack items)."""
        return f"{self.prefix}watch:{watch_id}:transitions"

    def watch_dedupe(self, client: str, task_id: str, callback_url: str) -> str:
        """String: watch id registered by ``client`` for this task and callback."""
        return f"{self.prefix}dedupe:{client}:{task_id}:{_digest(callback_url)}"

    def idempotency(self, client: str, idempotency_key: str) -> str:
        """String: watch id created under an ``Idempotency-Key``."""
        return f"{self.prefix}idem:{client}:{_digest(idempotency_key)}"

    def client_watches(self, client: str) -> str:
        """Sorted set of a client's watch ids scored by creation time (ms), for listing."""
        return f"{self.prefix}client:{client}:watches"

    def task_watches(self, task_id: str) -> str:
        """Set of watch ids that follow one Monite task (push fast path, listing by task)."""
        return f"{self.prefix}task:{task_id}:watches"

    def lookup(self, kind: str, value: str) -> str:
        """Set of watch ids whose ``kind`` (``task``, ``number``: a document number) is
        ``value``, for the console's search; expires with the watches it names."""
        return f"{self.prefix}find:{kind}:{_digest(value)}"

    def open_watches(self) -> str:
        """Sorted set of unfinished watch ids scored by creation time (ms): the oldest one."""
        return f"{self.prefix}open"

    # -- events and deliveries ---------------------------------------------------------------
    def event(self, event_id: str) -> str:
        """The event record: its exact body bytes as signed, type, watch id (msgpack)."""
        return f"{self.prefix}event:{event_id}"

    def duplicate(self, client: str, fingerprint: str) -> str:
        """String "watch id\nevent id": ``client``'s first recognized document with this
        fingerprint (``service.domain.duplicates``), kept for the watch retention."""
        return f"{self.prefix}dup:{client}:{fingerprint}"

    def attempts(self, watch_id: str) -> str:
        """List of delivery attempts of one watch (msgpack items, oldest first)."""
        return f"{self.prefix}watch:{watch_id}:attempts"

    def deliveries(self) -> str:
        """Sorted set: every ``delivering`` watch, scored by when its next attempt is due or its
        attempt in flight ends (ms): the delivery half of the next-step index."""
        return f"{self.prefix}deliveries"

    def troubled(self, scope: str, name: str) -> str:
        """Sorted set of watch ids with a failed delivery attempt, scored by the latest one (ms),
        per callback host (``scope`` ``host``) or per API client (``client``): what a recovery
        after a receiver's outage redelivers."""
        return f"{self.prefix}troubled:{scope}:{_digest(name)}"

    def receivers(self) -> str:
        """Sorted set of callback hosts scored by their latest delivery attempt (ms); the
        thousand most recent are kept."""
        return f"{self.prefix}receivers"

    # -- activity (the console's charts) -------------------------------------------------------
    def activity(self, minute: int) -> str:
        """Hash of one minute's counts (minute = ms since epoch // 60000): ``entered:<state>``,
        ``attempt:<outcome>``, ``lag:<bucket>``, ``monite:requests``, ``monite:429``."""
        return f"{self.prefix}activity:{minute}"

    def receiver_activity(self, slot: int) -> str:
        """Hash of ten minutes' delivery attempts per callback host (slot = ms // 600000):
        ``<host>\tok``, ``<host>\tfailed``, ``<host>\tms`` (latency sum)."""
        return f"{self.prefix}receiver-activity:{slot}"

    def workers(self) -> str:
        """Sorted set of worker processes scored by their latest heartbeat (ms)."""
        return f"{self.prefix}workers"

    def console_session(self, token_digest: str) -> str:
        """An operator's console session (msgpack), under the digest of its cookie's token."""
        return f"{self.prefix}console:session:{token_digest}"

    # -- polling -----------------------------------------------------------------------------
    def due(self, group: str) -> str:
        """Sorted set: watch ids of one poll group scored by next poll time (ms since epoch)."""
        return f"{self.prefix}due:{group}"

    def early(self, group: str) -> str:
        """Sorted set: the same watch ids scored by the earliest time a poll is worth it (ms)."""
        return f"{self.prefix}early:{group}"

    def round_lock(self, group: str) -> str:
        """String: the token of the poll round polling this group now (expires by itself)."""
        return f"{self.prefix}round:{group}"

    def groups(self) -> str:
        """Set of poll groups that may have watches in their due set."""
        return f"{self.prefix}groups"

    def groups_cursor(self) -> str:
        """String: where the reconciler's walk through ``groups`` goes on (an SSCAN cursor)."""
        return f"{self.prefix}reconcile:groups-cursor"

    # -- Monite access -----------------------------------------------------------------------
    def monite_token(self, credentials_id: str) -> str:
        """The shared Monite access token for one set of credentials (msgpack)."""
        return f"{self.prefix}monite:token:{credentials_id}"

    def monite_token_lock(self, credentials_id: str) -> str:
        """Single-flight lock while one process fetches a new token."""
        return f"{self.prefix}monite:token:{credentials_id}:lock"

    def rate_budget(self, credentials_id: str) -> str:
        """GCRA state (theoretical arrival time, ms) of the shared Monite request budget."""
        return f"{self.prefix}monite:rate:{credentials_id}"

    def rate_pause(self, credentials_id: str) -> str:
        """String (ms since epoch) before which nobody calls Monite, set after a 429."""
        return f"{self.prefix}monite:pause:{credentials_id}"

    def push_seen(self, event_id: str) -> str:
        """Marker of a Monite push event already accepted (replay protection)."""
        return f"{self.prefix}push:{event_id}"

    def expiring(self) -> str:
        """Sorted set of finished watches scored by when their records expire (ms): what is
        left of them elsewhere (their listing entry) is swept once they are gone."""
        return f"{self.prefix}expiring"

    def stats(self) -> str:
        """Hash of watch counts by state (``current:<state>``, ``entered:<state>``) and the
        reconciler's findings (``reconciled:<step>``, ``overdue_ms:<step>``)."""
        return f"{self.prefix}stats"

    # -- API ---------------------------------------------------------------------------------
    def api_rate(self) -> str:
        """Prefix of each API client's rate-limit state (its GCRA arrival time, ms)."""
        return f"{self.prefix}api-rate:"

    # -- arq ---------------------------------------------------------------------------------
    def queue(self) -> str:
        """arq's queue (a sorted set owned by arq)."""
        return f"{self.prefix}queue"

    def health_check(self) -> str:
        """arq's worker health-check key."""
        return f"{self.prefix}worker:health"

    def job_id(self, kind: str, *parts: str) -> str:
        """A deterministic arq job id; arq's own keys then carry our prefix too."""
        return ":".join((f"{self.prefix}job", kind, *parts))

    def pattern(self) -> str:
        """SCAN pattern matching every key of this prefix, arq's job keys included."""
        return f"*{self.prefix}*"


def _digest(value: str) -> str:
    # Caller-chosen texts (URLs, idempotency keys) become fixed-length key parts.
    return hashlib.sha256(value.encode()).hexdigest()[:32]
