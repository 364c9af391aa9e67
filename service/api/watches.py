"""``/v1/watches`` and ``/v1/events``: HTTP in, calls of the watch service and store out.

Another client's watch is answered exactly like an unknown one (404), everywhere.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.exceptions import NotFoundException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from service.api.bodies import (
    MAX_METADATA_BYTES,
    DeliveryList,
    RedeliveredOut,
    RedeliverIn,
    SecretOut,
    WatchIn,
    WatchList,
    WatchOptions,
    WatchOut,
    attempt_out,
    watch_out,
)
from service.api.deps import DEPENDENCIES, ClientDep, Services, ServicesDep
from service.api.errors import AUTHENTICATED, InvalidField, StateConflict, problem_responses
from service.callbacks.egress import CallbackRefused
from service.clock import from_ms, now_utc
from service.domain.schema import Event
from service.domain.watch import Watch, WatchState
from service.operations import Actor, NotAllowed, Registration, request_digest
from service.storage.watches import InvalidCursor

_NOT_FOUND = "no such watch"


def encode_metadata(metadata: dict[str, Any] | None) -> bytes:
    """The caller's metadata as stored and echoed (at most 4 KiB of JSON)."""
    raw = msgspec.json.encode(metadata or {})
    if len(raw) > MAX_METADATA_BYTES:
        raise InvalidField("metadata", f"is {len(raw)} bytes of JSON; at most {MAX_METADATA_BYTES}")
    return raw


async def checked_callback(services: Services, url: str) -> str:
    """The callback URL if the egress policy allows it (422 naming the field otherwise)."""
    try:
        return await services.policy.check_url(url)
    except CallbackRefused as exc:
        raise InvalidField("callback_url", str(exc)) from None


async def registration(
    services: Services,
    client: str,
    fields: WatchOptions,
    *,
    task_id: str,
    idempotency_key: str | None,
    digest: str,
) -> Registration:
    """A checked registration from a request's fields (shared by ``/v1/watches`` and
    ``/v1/documents``): the callback URL passes the egress policy, the metadata its limit."""
    return Registration(
        client=client,
        task_id=task_id,
        callback_url=await checked_callback(services, fields.callback_url),
        entity_id=None if fields.entity_id is None else str(fields.entity_id),
        metadata_json=encode_metadata(fields.metadata),
        secret=fields.secret,
        deadline_s=fields.deadline_s or services.settings.watch_deadline_s,
        include_raw=fields.include_raw,
        idempotency_key=idempotency_key,
        request_digest=digest,
    )


IdempotencyKey = Annotated[
    str | None, HeaderParameter(name="Idempotency-Key", max_length=255, required=False)
]


class WatchController(Controller):
    """Register, read, list, cancel and redeliver watches."""

    path = "/v1/watches"
    tags = ["watches"]
    dependencies = DEPENDENCIES

    @post(
        "/",
        status_code=201,
        summary="Register a watch on a Monite OCR task",
        responses={
            200: ResponseSpec(WatchOut, description="The same watch was already registered"),
            **problem_responses(*AUTHENTICATED, 409, 413, 415, 422),
        },
    )
    async def create(
        self,
        data: JSONBody[WatchIn],
        services: ServicesDep,
        client: ClientDep,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[WatchOut]:
        """201 with the new watch (and its generated secret, once); 200 for a repeat."""
        digest = request_digest(b"POST /v1/watches", msgspec.json.encode(data))
        reg = await registration(
            services,
            client,
            data,
            task_id=str(data.task_id),
            idempotency_key=idempotency_key,
            digest=digest,
        )
        registered = await services.watches.register(reg)
        out = watch_out(registered.watch, secret=registered.secret)
        return Response(out, status_code=201 if registered.created else 200)

    @post(
        "/redeliver",
        status_code=200,
        summary="Redeliver the caller's watches whose delivery failed within a time range",
        responses=problem_responses(*AUTHENTICATED, 413, 415, 422),
    )
    async def redeliver_failed(
        self, data: JSONBody[RedeliverIn], services: ServicesDep, client: ClientDep
    ) -> RedeliveredOut:
        """After a receiver's outage: every watch of the caller that ended ``failed`` with
        ``failure_code``, its last failed attempt between ``since`` and ``until``, starts a new
        delivery series (same event, same ``webhook-id``).

        Bounded (``limit`` watches per call; while ``more``, call again with ``until`` =
        ``next_until``) and idempotent: a watch
        redelivered is no longer ``failed``, so a repeated call does not deliver it twice.
        """
        until = data.until or now_utc()
        if until < data.since:
            raise InvalidField("until", "is before since")
        recovery = await services.watches.recover(
            Actor.client(client),
            "client",
            client,
            failure_code=data.failure_code,
            since=data.since,
            until=until,
            limit=data.limit,
        )
        next_until = recovery.next_until_ms
        return RedeliveredOut(
            redelivered=recovery.redelivered,
            more=recovery.more,
            next_until=None if next_until is None else from_ms(next_until),
        )

    @get(
        "/",
        summary="List the caller's watches, newest first",
        responses=problem_responses(*AUTHENTICATED, 422),
    )
    async def list_watches(
        self,
        services: ServicesDep,
        client: ClientDep,
        # `state` is a reserved name in Litestar handlers; the query parameter keeps its name.
        state_filter: Annotated[WatchState | None, QueryParameter(name="state")] = None,
        task_id: Annotated[str | None, QueryParameter(max_length=64)] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=512)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> WatchList:
        """A page of watches; ``next_cursor`` is null on the last page."""
        try:
            page = await services.store.watches.list_watches(
                client, state=state_filter, task_id=task_id, cursor=cursor, limit=limit
            )
        except InvalidCursor:
            raise InvalidField("cursor", "is not a cursor this service handed out") from None
        return WatchList(items=[watch_out(w) for w in page.items], next_cursor=page.next_cursor)

    @get(
        "/{watch_id:str}",
        summary="A watch with its state history",
        responses=problem_responses(*AUTHENTICATED, 404),
    )
    async def read(
        self, watch_id: FromPath[str], services: ServicesDep, client: ClientDep
    ) -> WatchOut:
        """State, timestamps, polls, last Monite status, event and failure of one watch."""
        watch = await _owned(services, client, watch_id)
        return watch_out(watch, transitions=await services.store.watches.transitions(watch_id))

    @delete(
        "/{watch_id:str}",
        status_code=200,
        summary="Cancel a watch",
        responses=problem_responses(*AUTHENTICATED, 404, 409),
    )
    async def cancel(
        self, watch_id: FromPath[str], services: ServicesDep, client: ClientDep
    ) -> WatchOut:
        """Stops polling or delivery: 200 with the cancelled watch, again on a repeat.

        A watch that already ended ``delivered`` or ``failed`` has nothing left to cancel: 409
        naming its state, and the watch is unchanged.
        """
        watch = await services.watches.cancel(Actor.client(client), watch_id)
        if watch is None:
            raise NotFoundException(detail=_NOT_FOUND)
        if watch.state != WatchState.CANCELLED:
            raise StateConflict(f"the watch is already {watch.state}; there is nothing to cancel")
        return watch_out(watch)

    @get(
        "/{watch_id:str}/deliveries",
        summary="Delivery attempts of a watch",
        responses=problem_responses(*AUTHENTICATED, 404),
    )
    async def deliveries(
        self, watch_id: FromPath[str], services: ServicesDep, client: ClientDep
    ) -> DeliveryList:
        """Every attempt, oldest first: time, status, latency, error, response excerpt."""
        await _owned(services, client, watch_id)
        attempts = await services.store.events.attempts(watch_id)
        return DeliveryList(items=[attempt_out(a) for a in attempts])

    @post(
        "/{watch_id:str}/redeliver",
        status_code=202,
        summary="Deliver the final event again",
        responses=problem_responses(*AUTHENTICATED, 404, 409),
    )
    async def redeliver(
        self, watch_id: FromPath[str], services: ServicesDep, client: ClientDep
    ) -> WatchOut:
        """A new attempt series of the same event (same ``webhook-id``)."""
        try:
            watch = await services.watches.redeliver(Actor.client(client), watch_id)
        except NotAllowed as exc:
            raise StateConflict(str(exc)) from None
        if watch is None:
            raise NotFoundException(detail=_NOT_FOUND)
        return watch_out(watch)

    @post(
        "/{watch_id:str}/rotate-secret",
        status_code=200,
        summary="Rotate the signing secret",
        responses=problem_responses(*AUTHENTICATED, 404),
    )
    async def rotate_secret(
        self, watch_id: FromPath[str], services: ServicesDep, client: ClientDep
    ) -> SecretOut:
        """A new secret; the previous one keeps signing (a second signature) for a grace period."""
        rotated = await services.watches.rotate_secret(Actor.client(client), watch_id)
        if rotated is None:
            raise NotFoundException(detail=_NOT_FOUND)
        watch, secret = rotated
        previous = [s.expires_at for s in watch.secrets[1:] if s.expires_at is not None]
        return SecretOut(secret=secret, previous_valid_until=max(previous) if previous else None)


class EventController(Controller):
    """The exact bodies of events, for receivers that missed one."""

    path = "/v1/events"
    tags = ["events"]
    dependencies = DEPENDENCIES

    @get(
        "/{event_id:str}",
        summary="The exact body of an event",
        media_type="application/json",
        responses={
            200: ResponseSpec(
                Event,
                description="The event, byte for byte as it was signed",
                generate_examples=False,
            ),
            **problem_responses(*AUTHENTICATED, 404),
        },
    )
    async def read(
        self, event_id: FromPath[str], services: ServicesDep, client: ClientDep
    ) -> Response[bytes]:
        """The bytes that were (or will be) signed and delivered."""
        event = await services.store.events.get(event_id)
        owner = (
            None
            if event is None
            else await services.watches.get(Actor.client(client), event.watch_id)
        )
        if event is None or owner is None:
            raise NotFoundException(detail="no such event")
        return Response(event.body, media_type="application/json")


async def _owned(services: ServicesDep, client: ClientDep, watch_id: str) -> Watch:
    watch = await services.watches.get(Actor.client(client), watch_id)
    if watch is None:
        raise NotFoundException(detail=_NOT_FOUND)
    return watch
