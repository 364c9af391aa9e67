"""``POST /v1/monite/webhooks``: Monite's ``ocr_task.finished`` push makes its watches poll now.

Polling stays the safety net: a push only moves the task's watches to the front of their due set
and wakes their group's poll round; the result itself is always read from Monite's API. A push
that cannot be read changes nothing: its watches keep polling on schedule, and the log says so.

Read defensively, since Monite's documents leave two things open: the signature may be keyed with
the ``whsec_…`` text or the bytes it encodes, and the task id may be ``object.id`` or
``object_id``. Both forms of each are accepted and ``ocr_relay_monite_pushes`` counts which
matched, so an operator sees which reading real Monite uses.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec
from litestar import Request, post
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, NotFoundException

from service import metrics
from service.api.deps import Services
from service.api.errors import InvalidField, problem_responses
from service.domain.schedule import UNGROUPED
from service.domain.signing import SignatureError, verify_monite_signature

log = logging.getLogger("ocr_relay.push")

# Monite retries a push it saw fail; one accepted event id is enough for a day.
_REPLAY_WINDOW_S: Final = 86400


class _PushObject(msgspec.Struct):
    id: str | None = None


class MonitePush(msgspec.Struct):
    """The parts of Monite's ``EventResourceForWebhookClient`` the fast path reads."""

    id: str
    action: str
    object_type: str
    object: _PushObject | None = None
    object_id: str | None = None
    entity_id: str | None = None

    def task_id(self) -> tuple[str | None, str]:
        """The task's id and the field it came from (``object.id``, ``object_id`` or ``none``)."""
        if self.object is not None and self.object.id:
            return self.object.id, "object.id"
        if self.object_id:
            return self.object_id, "object_id"
        return None, "none"


class PushAccepted(msgspec.Struct, frozen=True):
    """What the push did: how many watches will poll at once."""

    accepted: bool
    watches: int


@post(
    "/v1/monite/webhooks",
    status_code=200,
    tags=["monite"],
    summary="Monite push intake",
    responses=problem_responses(400, 401, 404, 422, 429, 503),
)
async def monite_webhook(request: Request[Any, Any, Any], state: State) -> PushAccepted:
    """Verify ``Monite-Signature``, drop replays, and make the task's watches poll now."""
    services: Services = state.services
    secret = services.settings.monite_webhook_secret
    if not secret:
        raise NotFoundException(detail="push intake is off (MONITE_WEBHOOK_SECRET is not set)")
    body = await request.body()
    try:
        key_form = verify_monite_signature(
            secret, request.headers.get("monite-signature", ""), body
        )
    except SignatureError as exc:
        raise NotAuthorizedException(detail=f"Monite-Signature rejected: {exc}") from None
    try:
        push = msgspec.json.decode(body, type=MonitePush)
    except msgspec.DecodeError as exc:  # ValidationError included
        metrics.MONITE_PUSHES.labels(key_form, "unreadable").inc()
        reason = str(exc) if isinstance(exc, msgspec.ValidationError) else "is not JSON"
        _fall_back_to_polling("the body cannot be read", reason)
        raise InvalidField("body", reason) from None
    task_id, task_id_field = push.task_id()
    metrics.MONITE_PUSHES.labels(key_form, task_id_field).inc()
    if push.object_type != "ocr_task":
        return PushAccepted(accepted=False, watches=0)
    if task_id is None:
        _fall_back_to_polling("it names no task (neither object.id nor object_id)", push.id)
        return PushAccepted(accepted=False, watches=0)
    # The task's watches poll with its entity header, or without one (partner-level tasks).
    groups = sorted({push.entity_id or UNGROUPED, UNGROUPED})
    found = await services.store.schedule.push_finished(push.id, task_id, groups, _REPLAY_WINDOW_S)
    if found is None:
        return PushAccepted(accepted=False, watches=0)
    for group, (moved, round_running) in found.items():
        # A running round takes them (it polls until none is due; at its end it schedules the
        # next round for what is left): at a thousand pushes a second, a round each would not.
        if moved and not round_running:
            await services.queue.schedule_round_now(group)
    return PushAccepted(accepted=True, watches=sum(moved for moved, _ in found.values()))


def _fall_back_to_polling(why: str, detail: str) -> None:
    log.warning(
        "Monite push ignored; its watches keep polling on schedule",
        extra={"reason": why, "detail": detail[:200]},
    )
