"""Building the events delivered to callbacks, and their exact bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from service.domain.schema import (
    CreditNoteDocument,
    Event,
    EventData,
    EventError,
    EventType,
    FailureCode,
    InvoiceDocument,
    NormalizedDocument,
)

_encoder: Final = msgspec.json.Encoder()


def recognized_event(
    *,
    watch_id: str,
    task_id: str,
    entity_id: str | None,
    metadata: dict[str, Any],
    document: NormalizedDocument,
    at: datetime,
) -> Event:
    """The ``<kind>.recognized`` event carrying a normalized document."""
    return Event(
        type=_recognized_type(document),
        timestamp=_event_time(at),
        data=EventData(
            watch_id=watch_id,
            task_id=task_id,
            entity_id=entity_id,
            metadata=metadata,
            document=document,
            error=None,
        ),
    )


def failed_event(
    *,
    watch_id: str,
    task_id: str,
    entity_id: str | None,
    metadata: dict[str, Any],
    code: FailureCode,
    message: str,
    at: datetime,
) -> Event:
    """The ``ocr.failed`` event: no document, and why."""
    return Event(
        type="ocr.failed",
        timestamp=_event_time(at),
        data=EventData(
            watch_id=watch_id,
            task_id=task_id,
            entity_id=entity_id,
            metadata=metadata,
            document=None,
            error=EventError(code=code, message=message),
        ),
    )


def encode_event(event: Event) -> bytes:
    """The exact body that is signed and delivered: compact JSON, UTF-8."""
    return _encoder.encode(event)


def _recognized_type(document: NormalizedDocument) -> EventType:
    if isinstance(document, InvoiceDocument):
        return "invoice.recognized"
    if isinstance(document, CreditNoteDocument):
        return "credit_note.recognized"
    return "receipt.recognized"


def _event_time(at: datetime) -> datetime:
    """RFC 3339 UTC in whole seconds, as Standard Webhooks' ``webhook-timestamp`` has them."""
    if at.tzinfo is None:
        raise ValueError("event time must be timezone-aware")
    return at.astimezone(UTC).replace(microsecond=0)
