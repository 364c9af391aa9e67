"""Request and response bodies of the API: the wire contract the OpenAPI schema publishes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from service.domain.watch import DeliveryFailureCode, Failure, Transition, Watch, WatchState
from service.storage.events import LoggedAttempt

MAX_METADATA_BYTES: Final = 4096
MAX_DEADLINE_S: Final = 7 * 24 * 3600

CallbackUrl = Annotated[str, msgspec.Meta(min_length=1, max_length=2048, description="http(s) URL")]
Secret = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^whsec_(?:[A-Za-z0-9+/]{4}){8,64}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        description="A Standard Webhooks secret: whsec_ + base64 of at least 24 random bytes",
    ),
]
DeadlineS = Annotated[int, msgspec.Meta(ge=1, le=MAX_DEADLINE_S, description="1 s to 7 days")]
DocumentType = Literal["invoice", "credit_note", "receipt"]
Metadata = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=(
            f"Any JSON object of at most {MAX_METADATA_BYTES} bytes (4 KiB) once encoded; echoed "
            "in every event as data.metadata"
        )
    ),
]
IncludeRaw = Annotated[
    bool,
    msgspec.Meta(
        description=(
            "Attach Monite's recognized_data, exactly as received, to the event as "
            "data.document.source.raw"
        )
    ),
]
EntityId = Annotated[
    uuid.UUID,
    msgspec.Meta(
        description=(
            "The Monite entity the task belongs to (sent as x-monite-entity-id); Monite pushes "
            "ocr_task.finished only for tasks created for an entity"
        )
    ),
]


class WatchOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What a caller sets on a watch, however it is made: one definition of each field's rules."""

    callback_url: CallbackUrl
    entity_id: EntityId | None = None
    metadata: Metadata | None = None
    secret: Secret | None = None
    deadline_s: DeadlineS | None = None
    include_raw: IncludeRaw = False


class WatchIn(WatchOptions, kw_only=True):
    """Register a watch on an existing Monite OCR task."""

    task_id: uuid.UUID


class DocumentFieldsIn(WatchOptions, kw_only=True):
    """The fields of a document upload besides the file (multipart form fields, as text)."""

    document_type: DocumentType | None = None


class DocumentUrlIn(DocumentFieldsIn, kw_only=True):
    """Create a Monite OCR task from a file URL, then watch it."""

    file_url: CallbackUrl


# Documentation only: service/api/documents.py reads the multipart parts itself.
class DocumentUploadForm(msgspec.Struct, kw_only=True):
    """Upload a document as multipart/form-data; its Monite OCR task is created, then watched."""

    file: Annotated[
        str,
        msgspec.Meta(
            description="The document: PDF, PNG or JPEG",
            extra_json_schema={"format": "binary"},
        ),
    ]
    callback_url: CallbackUrl
    entity_id: EntityId | msgspec.UnsetType = msgspec.UNSET
    document_type: DocumentType | msgspec.UnsetType = msgspec.UNSET
    metadata: (
        Annotated[
            str,
            msgspec.Meta(
                description=f"A JSON object as text, at most {MAX_METADATA_BYTES} bytes (4 KiB)"
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    secret: Secret | msgspec.UnsetType = msgspec.UNSET
    deadline_s: DeadlineS | msgspec.UnsetType = msgspec.UNSET
    include_raw: IncludeRaw = False


class FailureOut(msgspec.Struct, frozen=True):
    """Why a watch failed: a machine-readable code and a human message."""

    code: str
    message: str


class TransitionOut(msgspec.Struct, frozen=True):
    """A recorded state change."""

    at: datetime
    to: WatchState
    source: WatchState | None = msgspec.field(default=None, name="from")
    reason: str | None = None
    by: Annotated[
        str | None,
        msgspec.Meta(
            description="Who asked for the change: client:<name> (this API) or operator:<name> "
            "(the console); null when ocr-relay moved the watch on itself"
        ),
    ] = None


class RedeliverIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Redeliver the caller's watches whose delivery failed, e.g. after its receiver's outage."""

    state: Annotated[
        Literal["failed"], msgspec.Meta(description="The watches' state: only failed ones")
    ]
    failure_code: Annotated[
        DeliveryFailureCode,
        msgspec.Meta(description="Why their delivery failed"),
    ] = "delivery_exhausted"
    since: Annotated[
        datetime,
        msgspec.Meta(tz=True, description="Their last failed attempt at or after this time"),
    ]
    until: (
        Annotated[
            datetime,
            msgspec.Meta(tz=True, description="…and at or before this time (default: now)"),
        ]
        | None
    ) = None
    limit: Annotated[
        int, msgspec.Meta(ge=1, le=500, description="At most this many watches per call")
    ] = 100


class RedeliveredOut(msgspec.Struct, frozen=True):
    """What a bulk redelivery did; while ``more``, call again with ``until`` = ``next_until``."""

    redelivered: Annotated[
        list[str], msgspec.Meta(description="The watches now delivering their event again")
    ]
    more: Annotated[
        bool, msgspec.Meta(description="The call stopped at its bound: there may be more")
    ]
    next_until: Annotated[
        datetime | None,
        msgspec.Meta(description="While more: call again with this as until (same since)"),
    ] = None


class WatchOut(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A watch as the API shows it. ``secret`` appears once: in the response that generated it."""

    id: str
    task_id: str
    entity_id: str | None
    callback_url: str
    metadata: dict[str, Any]
    state: WatchState
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime
    polls: int
    last_monite_status: str | None
    event_id: str | None
    event_type: str | None
    failure: FailureOut | None
    delivery_attempts: int
    secret: str | msgspec.UnsetType = msgspec.UNSET
    transitions: list[TransitionOut] | msgspec.UnsetType = msgspec.UNSET


class WatchList(msgspec.Struct, frozen=True):
    """A page of watches, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[WatchOut]
    next_cursor: str | None


class AttemptOut(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery attempt: which attempt of which series of which event, when, what the
    callback answered (status, latency, an excerpt of its body) or what went wrong, and when
    the next attempt is due (null: none is)."""

    event_id: str
    series: int
    attempt: int
    at: datetime
    status_code: int | None
    latency_ms: float
    outcome: Literal["delivered", "retry", "gone", "rejected", "refused"]
    error: str | None
    response_excerpt: str | None
    next_attempt_at: datetime | None


def attempt_out(attempt: LoggedAttempt) -> AttemptOut:
    """The API's view of a logged attempt (the log's own record may grow fields it keeps)."""
    return AttemptOut(
        event_id=attempt.event_id,
        series=attempt.series,
        attempt=attempt.attempt,
        at=attempt.at,
        status_code=attempt.status_code,
        latency_ms=attempt.latency_ms,
        outcome=attempt.outcome,
        error=attempt.error,
        response_excerpt=attempt.response_excerpt,
        next_attempt_at=attempt.next_attempt_at,
    )


class DeliveryList(msgspec.Struct, frozen=True):
    """A watch's delivery attempts, oldest first."""

    items: list[AttemptOut]


class SecretOut(msgspec.Struct, frozen=True):
    """A newly rotated secret (shown only here) and until when the previous one keeps signing."""

    secret: str
    previous_valid_until: datetime | None


def _failure(f: Failure | None) -> FailureOut | None:
    return None if f is None else FailureOut(code=f.code, message=f.message)


def watch_out(
    watch: Watch,
    *,
    secret: str | None = None,
    transitions: list[Transition] | None = None,
) -> WatchOut:
    """The API view of a stored watch."""
    return WatchOut(
        id=watch.id,
        task_id=watch.task_id,
        entity_id=watch.entity_id,
        callback_url=watch.callback_url,
        metadata=msgspec.json.decode(watch.metadata_json),
        state=watch.state,
        created_at=watch.created_at,
        updated_at=watch.updated_at,
        deadline_at=watch.deadline_at,
        polls=watch.polls,
        last_monite_status=watch.last_monite_status,
        event_id=watch.event_id,
        event_type=watch.event_type,
        failure=_failure(watch.failure),
        delivery_attempts=watch.delivery_attempts,
        secret=secret if secret is not None else msgspec.UNSET,
        transitions=(
            msgspec.UNSET
            if transitions is None
            else [
                TransitionOut(at=t.at, to=t.to, source=t.source, reason=t.reason, by=t.by)
                for t in transitions
            ]
        ),
    )
