"""What a client can do to its watches: register, cancel, redeliver, rotate the secret.

The API translates HTTP into these calls; they check the rules of the watch state machine, write
through the store, and schedule jobs through the queue.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Final, Literal

import msgspec

from service.callbacks.sealing import Sealer
from service.clock import now_utc, to_ms
from service.domain.schedule import group_of, priority_score
from service.domain.signing import generate_secret
from service.domain.watch import (
    DeliveryFailureCode,
    SigningSecret,
    Watch,
    WatchState,
    can_redeliver,
)
from service.ids import new_id
from service.queue import Queue
from service.storage import Store
from service.storage.activity import Scope
from service.storage.watches import CreateResult

# How long the previous secret keeps signing after a rotation (receivers roll out the new one).
SECRET_GRACE: Final = timedelta(hours=24)


# A bulk recovery acts on at most this many watches per call, looking at most at RECOVER_SCAN.
RECOVER_LIMIT: Final = 500
RECOVER_SCAN: Final = 2000

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
    # What the request asked for, digested (``request_digest``): a replay of its Idempotency-Key
    # must ask for the same.
    request_digest: str | None = None


class Registered(msgspec.Struct, frozen=True):
    """The outcome of a registration; ``secret`` is set only when the service generated it now."""

    watch: Watch
    created: bool
    secret: str | None


class Actor(msgspec.Struct, frozen=True):
    """Who asks: an API client, who sees only its own watches, or an operator of the console,
    who sees every client's. What a person asks for is recorded as done ``by`` them."""

    kind: Literal["client", "operator"]
    name: str

    @classmethod
    def client(cls, name: str) -> Actor:
        """An API client."""
        return cls("client", name)

    @classmethod
    def operator(cls, name: str) -> Actor:
        """An operator signed in to the console."""
        return cls("operator", name)

    @property
    def label(self) -> str:
        """How the watch's history names the actor: ``operator:alice``."""
        return f"{self.kind}:{self.name}"

    def may_see(self, watch: Watch) -> bool:
        """True for an operator, and for the client that owns the watch."""
        return self.kind == "operator" or watch.client == self.name


class Recovery(msgspec.Struct, frozen=True, kw_only=True):
    """What one bulk recovery did: the watches it redelivered and those whose next attempt it
    brought forward. When it stopped at a bound, ``next_until_ms`` is where the next call goes
    on (as its ``until``); None when the range is done."""

    redelivered: list[str]
    expedited: list[str]
    next_until_ms: int | None = None

    @property
    def more(self) -> bool:
        """Another call (from ``next_until_ms``) may find more."""
        return self.next_until_ms is not None


class NotAllowed(Exception):
    """The watch is not in a state that allows this operation."""


class IdempotencyMismatch(Exception):
    """An Idempotency-Key was used before with a different request."""


def request_digest(*parts: bytes) -> str:
    """A digest of what a request asked for, to tell a replay of its Idempotency-Key from a
    different request reusing it."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _check_replay(earlier: Watch, digest: str | None) -> None:
    if earlier.request_digest is not None and digest != earlier.request_digest:
        raise IdempotencyMismatch(earlier.id)


class Claimed(msgspec.Struct, frozen=True):
    """What claiming an Idempotency-Key gave a request that acts before it registers: the watch
    an earlier request made with it, or the Monite task it made but could not register (reuse
    it), or neither (this request holds the key now)."""

    watch: Watch | None = None
    task_id: str | None = None


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
            request_digest=reg.request_digest if reg.idempotency_key else None,
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
        if result.replayed:
            _check_replay(result.watch, reg.request_digest)
        if result.created:
            await self.queue.schedule_round(group, to_ms(now))
        return Registered(
            watch=result.watch, created=result.created, secret=generated if result.created else None
        )

    async def submit_document(
        self, reg: Registration, create_task: Callable[[], Awaitable[str]]
    ) -> Registered:
        """Make the Monite task with ``create_task`` (it returns the task id), then watch it
        (``reg.task_id`` is ignored).

        With an Idempotency-Key the key is held while the task is made: a retry gets the watch
        of the first request (or ``IdempotencyInProgress`` while that one is at work), never a
        second Monite task — also when the first made its task but could not register it.
        """
        key = reg.idempotency_key
        task_id = None
        if key is not None:
            earlier = await self.claim_idempotency(reg.client, key, reg.request_digest)
            if earlier.watch is not None:
                return Registered(watch=earlier.watch, created=False, secret=None)
            task_id = earlier.task_id
        if task_id is None:
            try:
                task_id = await create_task()
            except BaseException:
                if key is not None:  # nothing was made: a retry may try again
                    await self.release_idempotency(reg.client, key)
                raise
            if key is not None:
                await self.remember_task(reg.client, key, task_id, reg.request_digest)
        made = msgspec.structs.replace(reg, task_id=task_id, idempotency_claimed=key is not None)
        return await self.register(made)

    async def claim_idempotency(
        self, client: str, idempotency_key: str, digest: str | None
    ) -> Claimed:
        """For a request that acts before it registers (``POST /v1/documents`` creates the
        Monite task first): what an earlier request with this key made, or nothing once this
        request holds the key; it then registers with ``idempotency_claimed``, calling
        ``remember_task`` as soon as its task exists, or, having made nothing,
        ``release_idempotency``. Raises ``IdempotencyInProgress`` while another request holds
        the key, ``IdempotencyMismatch`` when it was used with a different request."""
        key = self.store.keys.idempotency(client, idempotency_key)
        claim = await self.store.idempotency.claim(key, IDEMPOTENCY_HOLD_S)
        if claim.task_id is not None:
            if claim.task_digest and claim.task_digest != digest:
                raise IdempotencyMismatch(claim.task_id)
            return Claimed(task_id=claim.task_id)
        earlier = None if claim.watch_id is None else await self.store.watches.get(claim.watch_id)
        if earlier is not None:
            _check_replay(earlier, digest)
        return Claimed(watch=earlier)

    async def remember_task(
        self, client: str, idempotency_key: str, task_id: str, digest: str | None
    ) -> None:
        """The request holding this key made Monite task ``task_id``: should registering it
        fail, a retry with the key registers the same task instead of making another."""
        key = self.store.keys.idempotency(client, idempotency_key)
        await self.store.idempotency.remember_task(key, task_id, digest)

    async def release_idempotency(self, client: str, idempotency_key: str) -> None:
        """Let a retry with this key act again: the request holding it made nothing."""
        await self.store.idempotency.release(self.store.keys.idempotency(client, idempotency_key))

    async def get(self, actor: Actor, watch_id: str) -> Watch | None:
        """The watch, or None when unknown or not the actor's to see (both look the same)."""
        watch = await self.store.watches.get(watch_id)
        return watch if watch is not None and actor.may_see(watch) else None

    async def cancel(self, actor: Actor, watch_id: str) -> Watch | None:
        """Stop polling or delivery; a finished watch is returned unchanged."""
        watch = await self.get(actor, watch_id)
        if watch is None:
            return None

        def mutate(w: Watch) -> Watch | None:
            if w.state not in (WatchState.POLLING, WatchState.DELIVERING):
                return None
            w.state = WatchState.CANCELLED
            return w

        cancelled = await self.store.watches.update(
            watch_id, mutate, reason=f"cancelled by {actor.kind}", by=actor.label
        )
        return cancelled or await self.store.watches.get(watch_id)

    async def redeliver(self, actor: Actor, watch_id: str) -> Watch | None:
        """Start a new delivery series of the final event (same event id, so same webhook-id).

        A watch already delivering is returned as it is: a client retrying a redelivery whose
        answer it lost gets what it asked for, not an error.
        """
        watch = await self.get(actor, watch_id)
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

        updated = await self.store.watches.update(
            watch_id, mutate, reason="redelivery requested", by=actor.label
        )
        if updated is None:
            return await self.store.watches.get(watch_id)
        # Only an accelerator: the delivery index holds the step if this enqueue is lost.
        await self.queue.schedule_delivery(watch_id, updated.delivery_series, 1, 0.0)
        return updated

    async def expedite(self, actor: Actor, watch_id: str) -> Watch | None:
        """Bring a waiting delivery's next attempt forward to now; None when the watch is not
        waiting for one (finished, or an attempt is in flight)."""
        watch = await self.get(actor, watch_id)
        if watch is None:
            return None
        now = now_utc()

        def mutate(w: Watch) -> Watch | None:
            if w.state != WatchState.DELIVERING or w.delivery_in_flight_until is not None:
                return None
            if w.next_attempt_at is not None and w.next_attempt_at <= now:
                return None  # already due: the delivery index has it
            w.next_attempt_at = now
            return w

        updated = await self.store.watches.update(watch_id, mutate)
        if updated is None:
            return None
        await self.queue.schedule_delivery(
            watch_id,
            updated.delivery_series,
            updated.delivery_attempts + 1,
            0.0,
            hurried=updated.version,
        )
        return updated

    async def recover(
        self,
        actor: Actor,
        scope: Scope,
        name: str,
        *,
        failure_code: DeliveryFailureCode,
        since: datetime,
        until: datetime,
        include_waiting: bool = False,
        limit: int = RECOVER_LIMIT,
        scan: int = RECOVER_SCAN,
    ) -> Recovery:
        """Redeliver the watches of a callback host or client whose delivery failed with
        ``failure_code``, their last failed attempt between ``since`` and ``until``; with
        ``include_waiting``, also bring forward the next attempt of those still retrying.

        Bounded: at most ``limit`` watches acted on and ``scan`` looked at per call; the answer
        says where the next call goes on. Idempotent: a redelivered watch is ``delivering`` and
        no longer matches, so calling again never delivers it twice and, once done, does nothing.
        """
        until_ms = to_ms(until)
        found = await self.store.activity.troubled(
            scope, name, since_ms=to_ms(since), until_ms=until_ms, limit=scan
        )
        redelivered: list[str] = []
        expedited: list[str] = []
        watches = await self.store.watches.get_many([watch_id for watch_id, _ in found])
        for (_, failed_ms), watch in zip(found, watches, strict=True):
            if len(redelivered) + len(expedited) >= limit:
                # Go on from this entry: the ones acted on no longer match, so none is repeated.
                return Recovery(
                    redelivered=redelivered, expedited=expedited, next_until_ms=failed_ms
                )
            if watch is None or not actor.may_see(watch):
                continue
            failed = watch.failure.code if watch.failure is not None else None
            if watch.state == WatchState.FAILED and failed == failure_code:
                if await self.redeliver(actor, watch.id) is not None:
                    redelivered.append(watch.id)
            elif (
                include_waiting
                and watch.state == WatchState.DELIVERING
                and await self.expedite(actor, watch.id) is not None
            ):
                expedited.append(watch.id)
        next_until = None
        if len(found) >= scan:
            # Every entry looked at may have been delivered since: go on below the last one
            # (inclusive, for its neighbours of the same millisecond; always below ``until``).
            next_until = min(found[-1][1], until_ms - 1)
        return Recovery(redelivered=redelivered, expedited=expedited, next_until_ms=next_until)

    async def rotate_secret(self, actor: Actor, watch_id: str) -> tuple[Watch, str] | None:
        """A new secret signs from now on; the current one keeps signing for ``SECRET_GRACE``."""
        watch = await self.get(actor, watch_id)
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
