"""``POST /v1/monite/webhooks``: Monite's ``ocr_task.finished`` push makes its watches poll now.

Polling stays the safety net: a push only moves the task's watches to the front of their due set
and wakes their group's poll round; the result itself is always read from Monite's API.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar import Request, post
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, NotFoundException

from service.api.deps import Services
from service.api.errors import InvalidField, problem_responses
from service.domain.schedule import UNGROUPED
from service.domain.signing import SignatureError, verify_monite_signature

# Monite retries a push it saw fail; one accepted event id is enough for a day.
_REPLAY_WINDOW_S: Final = 86400


class _PushObject(msgspec.Struct):
    id: str


class MonitePush(msgspec.Struct):
    """The parts of Monite's ``EventResourceForWebhookClient`` the fast path reads."""

    id: str
    action: str
    object_type: str
    object: _PushObject | None = None
    entity_id: str | None = None


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
        verify_monite_signature(secret, request.headers.get("monite-signature", ""), body)
    except SignatureError as exc:
        raise NotAuthorizedException(detail=f"Monite-Signature rejected: {exc}") from None
    try:
        push = msgspec.json.decode(body, type=MonitePush)
    except msgspec.ValidationError as exc:
        raise InvalidField("body", str(exc)) from None
    except msgspec.DecodeError:
        raise InvalidField("body", "is not JSON") from None
    if push.object_type != "ocr_task" or push.object is None:
        return PushAccepted(accepted=False, watches=0)
    # The task's watches poll with its entity header, or without one (partner-level tasks).
    groups = sorted({push.entity_id or UNGROUPED, UNGROUPED})
    found = await services.store.schedule.push_finished(
        push.id, push.object.id, groups, _REPLAY_WINDOW_S
    )
    if found is None:
        return PushAccepted(accepted=False, watches=0)
    for group, (moved, round_running) in found.items():
        # A running round takes them (it polls until none is due; at its end it schedules the
        # next round for what is left): at a thousand pushes a second, a round each would not.
        if moved and not round_running:
            await services.queue.schedule_round_now(group)
    return PushAccepted(accepted=True, watches=sum(moved for moved, _ in found.values()))
