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
from service.domain.signing import SignatureError, verify_monite_signature
from service.store import group_of

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
    responses=problem_responses(400, 401, 404, 422, 429),
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
    fresh = await services.store.redis.set(
        services.keys.push_seen(push.id), b"1", nx=True, ex=_REPLAY_WINDOW_S
    )
    if not fresh or push.object_type != "ocr_task" or push.object is None:
        return PushAccepted(accepted=False, watches=0)
    watch_ids = await services.store.watches_of_task(push.object.id)
    watches = [w for w in await services.store.get_many(watch_ids) if w is not None]
    for group in {group_of(w) for w in watches}:
        ids = [w.id for w in watches if group_of(w) == group]
        # Due since the epoch: a pushed watch goes before every merely overdue one.
        await services.store.poll_now(group, ids, 0)
        # A running round takes them (it polls until none is due; at its end it schedules the
        # next round for what is left): at a thousand pushes a second, a round each would not.
        if not await services.store.round_running(group):
            await services.queue.schedule_round_now(group)
    return PushAccepted(accepted=True, watches=len(watches))
