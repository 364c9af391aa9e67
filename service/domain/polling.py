"""What a poll's answer means for its watch: pure rules, carried out by ``service.polling``.

A watch either polls again (``PollAgain``: Monite said ``processing``, could not be reached, or
asked us to wait) or is finished (``Finish``: the event it is to receive, recognized or failed,
encoded once, exactly as it will be signed). Nothing here raises for anything Monite sends: an
answer that cannot be read becomes an ``invalid_payload`` failure of its own watch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, Literal

import msgspec

from service.domain import backoff
from service.domain.duplicates import with_possible_duplicate
from service.domain.events import encode_event, failed_event, recognized_event
from service.domain.monite_models import decode_task, is_terminal
from service.domain.normalize import NormalizeContext, NotRecognizedError, normalize
from service.domain.schema import FailureCode, NormalizedDocument, RelatedEvent
from service.domain.watch import Failure, Watch

# A batch with room takes watches up to this fraction of their interval early: one request costs
# the same for 1 or 100 ids, and an early poll only makes a result fresher.
EARLY_FRACTION: Final = 1 / 3

FAILURE_MESSAGES: Final[dict[FailureCode, str]] = {
    "ocr_error": "Monite reported status 'error' for this OCR task",
    "task_not_found": "Monite does not know this OCR task (404)",
    "deadline_exceeded": "the OCR task did not finish before the watch's deadline",
    "upstream_unauthorized": "Monite rejected our credentials even after a token refresh",
}
KNOWN_STATUSES: Final = frozenset({"processing", "success", "error"})


class PollAgain(msgspec.Struct, frozen=True, kw_only=True):
    """Poll the watch again: ``poll`` (Monite answered, the task goes on), ``error`` (Monite
    could not be reached or refused: backs off) or ``wait`` (the rate limit: not a poll)."""

    kind: Literal["poll", "error", "wait"]
    status: str | None = None
    retry_after_s: float | None = None


class Recognized(msgspec.Struct, frozen=True, kw_only=True):
    """The task succeeded and its document is normalized; the event is made by ``recognized``
    once the store has said whether the document is a possible duplicate."""

    document: NormalizedDocument
    status: str
    finished_at: datetime


class Finish(msgspec.Struct, frozen=True, kw_only=True):
    """Finish the watch with this event (``failure`` set for an ``ocr.failed`` event);
    ``status`` is Monite's, when it answered; ``finished_at`` when Monite finished the task."""

    event_type: str
    body: bytes
    failure: Failure | None = None
    status: str | None = None
    finished_at: datetime | None = None


PollDecision = PollAgain | Recognized | Finish


def failed(
    watch: Watch, code: FailureCode, message: str, *, at: datetime, status: str | None = None
) -> Finish:
    """Finish ``watch`` with an ``ocr.failed`` event saying ``code`` and ``message``."""
    event = failed_event(
        watch_id=watch.id,
        task_id=watch.task_id,
        entity_id=watch.entity_id,
        metadata=msgspec.json.decode(watch.metadata_json),
        code=code,
        message=message,
        at=at,
    )
    return Finish(
        event_type=event.type,
        body=encode_event(event),
        failure=Failure(code=code, message=message),
        status=status,
    )


def decide_on_task(watch: Watch, body: bytes, *, at: datetime) -> tuple[PollDecision, str]:
    """What Monite's task (``body``, as it came) means for ``watch``, and the poll's metric label.

    Normalization is pure and tested never to raise on well-typed data; if some payload still
    trips it, that payload fails its own watch, not its batch-mates.
    """
    try:
        task = decode_task(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        message = f"Monite's task could not be decoded: {exc}"
        return failed(watch, "invalid_payload", message, at=at), "invalid_payload"
    label = task.status if task.status in KNOWN_STATUSES else "unknown"
    if not is_terminal(task.status):
        return PollAgain(kind="poll", status=task.status), label
    if task.status == "error":
        message = FAILURE_MESSAGES["ocr_error"]
        if task.error is not None and task.error.message:
            message = f"{message}: {task.error.message}"
        return failed(watch, "ocr_error", message, at=at, status=task.status), label
    context = NormalizeContext(
        task_id=watch.task_id, entity_id=watch.entity_id, include_raw=watch.include_raw, body=body
    )
    try:
        document = normalize(task, context)
    except NotRecognizedError as exc:
        return failed(watch, "invalid_payload", str(exc), at=at, status=task.status), label
    except Exception as exc:
        message = f"the recognized data could not be normalized ({type(exc).__name__})"
        return failed(watch, "invalid_payload", message, at=at, status=task.status), label
    return Recognized(document=document, status=task.status, finished_at=task.updated_at), label


def recognized(
    watch: Watch, decision: Recognized, *, at: datetime, earlier: RelatedEvent | None = None
) -> Finish:
    """Finish ``watch`` with the event of its recognized document; ``earlier``: the event of
    the same client that the document looks like a duplicate of (a ``possible_duplicate``
    warning points at it)."""
    document = decision.document
    if earlier is not None:
        document = with_possible_duplicate(document, earlier)
    event = recognized_event(
        watch_id=watch.id,
        task_id=watch.task_id,
        entity_id=watch.entity_id,
        metadata=msgspec.json.decode(watch.metadata_json),
        document=document,
        at=at,
    )
    return Finish(
        event_type=event.type,
        body=encode_event(event),
        status=decision.status,
        finished_at=decision.finished_at,
    )


def next_poll(
    watch: Watch, again: PollAgain, schedule: Sequence[float], *, now: datetime
) -> tuple[datetime, datetime]:
    """When to poll ``watch`` next, and from when on a batch with room may take it early; never
    after its deadline (where the round that claims it fails it)."""
    if again.kind == "error":
        delay = backoff.upstream_error_delay(watch.poll_errors + 1, again.retry_after_s)
        early = delay
    else:
        polls = watch.polls + (1 if again.kind == "poll" else 0)
        delay = backoff.next_poll_delay(schedule, max(1, polls), again.retry_after_s)
        # Never early past a Retry-After; otherwise up to a third of the interval early.
        early = delay if again.retry_after_s is not None else delay * (1 - EARLY_FRACTION)
    due_at = min(now + timedelta(seconds=delay), watch.deadline_at)
    return due_at, min(now + timedelta(seconds=early), due_at)
