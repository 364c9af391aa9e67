"""What a client can do to its watches: register, cancel, redeliver, rotate the secret.

The API translates HTTP into these calls; they check the rules of the watch state machine, write
through the store, and schedule jobs through the queue.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import msgspec

from service.clock import now_utc, to_ms
from service.domain.schedule import group_of, priority_score
from service.domain.signing import generate_secret
from service.domain.watch import SigningSecret, Watch, WatchState, can_redeliver
from service.ids import new_id
from service.queue import Queue
from service.sealing import Sealer
from service.storage import Store
from service.storage.watches import CreateResult

# How long the previous secret keeps signing after a rotation (receivers roll out the new one).
SECRET_GRACE: Final = timedelta(hours=24)


# How long a request may hold an Idempotency-Key before registering: a Monite upload waits for
# the rate budget and Monite itself; a crashed request's key is free again after this.
IDEMPOTENCY_HOLD_S: Final = 300


class Registration(msgspec.Struct, frozen=True, kw_only=True):
    """A validated registration request."""

    client: str
    task_id: str
    callback_url: str
    entity_id: str | None = None
    metadata_json: bytes = b"{}"
    secret: str | None = None
    deadline_s: int
    include_raw: bool = False
    idempotency_key: str | None = None
    # This request holds ``idempotency_key`` already (see ``WatchService.claim_idempotency``).
    idempotency_claimed: bool = False


class Registered(msgspec.Struct, frozen=True):
    """The outcome of a registration; ``secret`` is set only when the service generated it now."""

    watch: Watch
    created: bool
    secret: str | None


class NotAllowed(Exception):
    """The watch is not in a state that allows this operation."""


class WatchService:
    """The operations of the API on watches."""

    def __init__(self, store: Store, queue: Queue, sealer: Sealer) -> None:
        self.store = store
        self.queue = queue
        self.sealer = sealer

    async def register(self, reg: Registration) -> Registered:
        """Create a watch and schedule its first poll, or return the existing identical one."""
        now = now_utc()
        generated = None if reg.secret else generate_secret()
        watch = Watch(
            id=new_id("wat"),
            client=reg.client,
            task_id=reg.task_id,
            entity_id=reg.entity_id,
            callback_url=reg.callback_url,
            metadata_json=reg.metadata_json,
            secrets=(SigningSecret(value=self.sealer.seal(reg.secret or generated or "")),),
            include_raw=reg.include_raw,
            created_at=now,
            updated_at=now,
            deadline_at=now + timedelta(seconds=reg.deadline_s),
        )
        group = group_of(watch.entity_id)
        result: CreateResult = await self.store.watches.create_watch(
            watch,
            group=group,
            idempotency_key=(
                self.store.keys.idempotency(reg.client, reg.idempotency_key)
                if reg.idempotency_key
                else None
            ),
            # A first poll goes before every overdue re-poll of its group.
            first_poll_at_ms=priority_score(to_ms(now)),
            idempotency_claimed=reg.idempotency_claimed,
        )
        if result.created:
            await self.queue.schedule_round(group, to_ms(now))
        return Registered(
            watch=result.watch, created=result.created, secret=generated if result.created else None
        )

    async def claim_idempotency(self, client: str, idempotency_key: str) -> Watch | None:
        """For a request that acts before it registers (``POST /v1/documents`` creates the
        Monite task first): the watch an earlier request with this key made, or None once this
        request holds the key; it then registers with ``idempotency_claimed`` or, having made
        nothing, calls ``release_idempotency``. Raises ``IdempotencyInProgress`` meanwhile."""
        key = self.store.keys.idempotency(client, idempotency_key)
        watch_id = await self.store.idempotency.claim(key, IDEMPOTENCY_HOLD_S)
        return None if watch_id is None else await self.store.watches.get(watch_id)

    async def release_idempotency(self, client: str, idempotency_key: str) -> None:
        """Let a retry with this key act again: the request holding it made nothing."""
        await self.store.idempotency.release(self.store.keys.idempotency(client, idempotency_key))

    async def get(self, client: str, watch_id: str) -> Watch | None:
        """The client's watch, or None (unknown and other clients' watches look the same)."""
        watch = await self.store.watches.get(watch_id)
        return watch if watch is not None and watch.client == client else None

    async def cancel(self, client: str, watch_id: str) -> Watch | None:
        """Stop polling or delivery; a finished watch is returned unchanged."""
        watch = await self.get(client, watch_id)
        if watch is None:
            return None

        def mutate(w: Watch) -> Watch | None:
            if w.state not in (WatchState.POLLING, WatchState.DELIVERING):
                return None
            w.state = WatchState.CANCELLED
            return w

        cancelled = await self.store.watches.update(watch_id, mutate, reason="cancelled by client")
        return cancelled or await self.store.watches.get(watch_id)

    async def redeliver(self, client: str, watch_id: str) -> Watch | None:
        """Start a new delivery series of the final event (same event id, so same webhook-id).

        A watch already delivering is returned as it is: a client retrying a redelivery whose
        answer it lost gets what it asked for, not an error.
        """
        watch = await self.get(client, watch_id)
        if watch is None:
            return None

        def mutate(w: Watch) -> Watch | None:
            if w.state == WatchState.DELIVERING:
                return None
            if not can_redeliver(w.state, w.event_id is not None):
                raise NotAllowed(
                    f"a watch in state {w.state.value!r} has no finished delivery to repeat"
                )
            w.state = WatchState.DELIVERING
            w.failure = w.ocr_failure
            w.delivery_series += 1
            w.delivery_attempts = 0
            w.delivery_in_flight_until = None
            w.next_attempt_at = now_utc()
            return w

        updated = await self.store.watches.update(watch_id, mutate, reason="redelivery requested")
        if updated is None:
            return await self.store.watches.get(watch_id)
        # Only an accelerator: the delivery index holds the step if this enqueue is lost.
        await self.queue.schedule_delivery(watch_id, updated.delivery_series, 1, 0.0)
        return updated

    async def rotate_secret(self, client: str, watch_id: str) -> tuple[Watch, str] | None:
        """A new secret signs from now on; the current one keeps signing for ``SECRET_GRACE``."""
        watch = await self.get(client, watch_id)
        if watch is None:
            return None
        new_secret = generate_secret()
        now = now_utc()

        def mutate(w: Watch) -> Watch | None:
            kept = tuple(
                SigningSecret(value=s.value, expires_at=s.expires_at or now + SECRET_GRACE)
                for s in w.secrets
                if s.expires_at is None or s.expires_at > now
            )
            w.secrets = (SigningSecret(value=self.sealer.seal(new_secret)), *kept)
            return w

        updated = await self.store.watches.update(watch_id, mutate)
        return None if updated is None else (updated, new_secret)
