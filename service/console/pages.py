"""The console's pages and the operator's actions (sign-in is ``service.console.access``).

Plain HTML forms, no JavaScript: every action is a GET that shows what will happen and a POST
that does it (the confirmation works without a script), and every POST carries the session's
CSRF token. Operators act through the same ``WatchService`` as clients, as ``Actor.operator``,
so the watch's history records who asked.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, get_args
from urllib.parse import urlencode

from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Redirect, Template
from redis.exceptions import RedisError

from service.api.deps import Services, provide_services
from service.api.errors import EXCEPTION_HANDLERS
from service.clock import from_ms
from service.console import access, views
from service.console.access import (
    PREFIX,
    NotSignedIn,
    ServicesDep,
    SignedDep,
    checked_form,
    page,
    provide_signed,
    signed_in_later,
)
from service.console.charts import bar_list, column_chart
from service.console.rendering import ERROR_HEADINGS
from service.domain.watch import FailureCode, WatchState
from service.operations import NotAllowed
from service.storage.watches import InvalidCursor

log = logging.getLogger("ocr_relay.console")

REFRESH_S: Final = 15
FAILURE_CODES: Final = sorted(
    code for part in get_args(FailureCode) for code in get_args(part) or (part,)
)


# -- pages --------------------------------------------------------------------------------------
# The moments a page takes: any watch's, with room to shift by a day either way.
_MOMENTS: Final = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9998, 12, 31, tzinfo=UTC))


@get("/")
async def overview(services: ServicesDep, signed: SignedDep) -> Template:
    """Watches by state, the last hour's deliveries, lag, Monite traffic and workers."""
    ov = await views.overview(services.store, services.settings.monite_rate_limit)
    requests = ov.monite_requests_per_s.values
    charts = {
        "states": bar_list([(s, float(c)) for s, c in ov.states], title="Watches by state"),
        "delivered": column_chart(
            ov.delivered.values,
            title="Delivered per minute",
            start_label="-60 min",
            end_label="now",
        ),
        "failed": column_chart(
            ov.failed_attempts.values,
            title="Failed delivery attempts per minute",
            start_label="-60 min",
            end_label="now",
        ),
        "monite": column_chart(
            requests,
            title="Monite requests per second, minute averages",
            start_label="-60 min",
            end_label="now",
            unit="/s",
            limit=ov.monite_budget_per_s,
            limit_label="budget",
        ),
    }
    # The last complete minute: the current one has only just begun.
    monite_now = requests[-2] if len(requests) > 1 else 0.0
    return page(
        "overview.html",
        signed,
        title="Overview",
        page="overview",
        ov=ov,
        charts=charts,
        monite_now=monite_now,
        refresh_s=REFRESH_S,
    )


@get("/watches")
async def find(
    request: Request[Any, Any, Any], services: ServicesDep, signed: SignedDep
) -> Template:
    """Search by id, task id, event id or document number; or filter every client's watches."""
    query = request.query_params
    error = None
    try:
        filters = views.Filters(
            q=query.get("q", "").strip()[:200],
            client=query.get("client", ""),
            state=_state(query.get("state", "")),
            failure_code=query.get("failure_code", ""),
            since=_moment(query.get("since", ""), "since"),
            until=_moment(query.get("until", ""), "until"),
        )
        result = await views.find(
            services.store, _clients(services), filters, query.get("cursor") or None
        )
    except (ValueError, InvalidCursor) as exc:
        error = str(exc) if not isinstance(exc, InvalidCursor) else "That page link is stale."
        filters = views.Filters()
        result = views.FindPage(items=[], next_cursor=None)
    next_query = {k: v for k, v in query.items() if k != "cursor" and v}
    if result.next_cursor:
        next_query["cursor"] = result.next_cursor
    return page(
        "find.html",
        signed,
        title="Find",
        page="find",
        filters=filters,
        result=result,
        error=error,
        clients=_clients(services),
        states=[s.value for s in WatchState],
        failure_codes=FAILURE_CODES,
        since_value=_local(filters.since),
        until_value=_local(filters.until),
        next_href=f"{PREFIX}/watches?{urlencode(next_query)}",
    )


@get("/watches/{watch_id:str}")
async def watch_page(
    watch_id: FromPath[str],
    services: ServicesDep,
    signed: SignedDep,
    done: FromQuery[str | None] = None,
) -> Template:
    """One watch: registration, timeline, polls, attempts, document and event."""
    view = await views.watch_page(services.store, watch_id)
    if view is None:
        raise NotFoundException(detail=f"There is no watch {watch_id}.")
    notice = {"redelivered": "Redelivery started.", "cancelled": "The watch is cancelled."}
    return page(
        "watch.html",
        signed,
        title=f"Watch {watch_id}",
        page="find",
        view=view,
        notice=notice.get(done or ""),
    )


_ACTIONS: Final = {
    "redeliver": ("Redeliver", "Send the event of {id} to its callback again (same webhook-id)?"),
    "cancel": ("Cancel", "Stop polling or delivering {id}? This cannot be undone."),
}


@get("/watches/{watch_id:str}/{action:str}")
async def confirm_action(
    watch_id: FromPath[str], action: FromPath[str], services: ServicesDep, signed: SignedDep
) -> Template:
    """What pressing Redeliver or Cancel will do, with the button that does it."""
    if action not in _ACTIONS or await services.store.watches.get(watch_id) is None:
        raise NotFoundException(detail=f"There is no watch {watch_id} to {action}.")
    verb, question = _ACTIONS[action]
    return page(
        "confirm.html",
        signed,
        title=f"{verb} {watch_id}",
        page="find",
        heading=f"{verb} this watch?",
        question=question.format(id=watch_id),
        action=f"{PREFIX}/watches/{watch_id}/{action}",
        hidden=[],
        button=f"{verb} {watch_id}",
        danger=action == "cancel",
        back=f"{PREFIX}/watches/{watch_id}",
    )


@post("/watches/{watch_id:str}/{action:str}", status_code=303)
async def act(
    request: Request[Any, Any, Any],
    watch_id: FromPath[str],
    action: FromPath[str],
    services: ServicesDep,
    signed: SignedDep,
) -> Response[Any]:
    """Redeliver or cancel, as the signed-in operator."""
    fields = await checked_form(request, signed)
    if action not in _ACTIONS:
        raise NotFoundException(detail=f"There is no action {action}.")
    if fields.get("confirm") != "yes":
        return Redirect(path=f"{PREFIX}/watches/{watch_id}/{action}", status_code=303)
    try:
        if action == "redeliver":
            watch = await services.watches.redeliver(signed.actor, watch_id)
        else:
            watch = await services.watches.cancel(signed.actor, watch_id)
    except NotAllowed as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    if watch is None:
        raise NotFoundException(detail=f"There is no watch {watch_id}.")
    log.info(
        f"console {action}",
        extra={"watch_id": watch_id, "task_id": watch.task_id, "operator": signed.actor.name},
    )
    done = "redelivered" if action == "redeliver" else "cancelled"
    return Redirect(path=f"{PREFIX}/watches/{watch_id}?done={done}", status_code=303)


@get("/receivers")
async def receivers(
    services: ServicesDep, signed: SignedDep, host: FromQuery[str | None] = None
) -> Template:
    """Callback hosts with their success rate and latency; one host's failing watches."""
    until = datetime.now(UTC)
    host_watches = (
        []
        if not host
        else await views.host_watches(services.store, host, until - timedelta(days=1), until)
    )
    return page(
        "receivers.html",
        signed,
        title="Receivers",
        page="receivers",
        rows=await views.receivers(services.store),
        host=host,
        host_watches=host_watches,
    )


@get("/receivers/recover")
async def recover_form(
    host: FromQuery[str],
    services: ServicesDep,
    signed: SignedDep,
    until_value: Annotated[str, QueryParameter(name="until")] = "",
) -> Template:
    """The Recover form of one host: a time range (``until`` where a bounded recovery stopped),
    and how many watches it may touch."""
    try:
        until = _moment(until_value, "until") or datetime.now(UTC)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    since = until - timedelta(days=1)
    candidates = await views.host_watches(services.store, host, since, until)
    return page(
        "recover.html",
        signed,
        title=f"Recover {host}",
        page="receivers",
        host=host,
        candidates=len(candidates),
        more=len(candidates) >= views.HOST_WATCHES,
        since_value=_local(since),
        # The form takes minutes: round up, so that nothing before ``until`` is left out.
        until_value=_local(until + timedelta(minutes=1)),
    )


@post("/receivers/recover", status_code=200)
async def recover(
    request: Request[Any, Any, Any], services: ServicesDep, signed: SignedDep
) -> Template:
    """Redeliver a host's exhausted watches in the range, and retry now those still waiting."""
    fields = await checked_form(request, signed)
    host = fields.get("host", "")
    if fields.get("confirm") != "yes" or not host:
        raise HTTPException(status_code=400, detail="Open the Recover form and confirm it.")
    try:
        since = _moment(fields.get("since", ""), "since") or datetime.now(UTC) - timedelta(days=1)
        until = _moment(fields.get("until", ""), "until") or datetime.now(UTC)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    recovery = await services.watches.recover(
        signed.actor,
        "host",
        host,
        failure_code="delivery_exhausted",
        since=since,
        until=until,
        include_waiting=fields.get("include_waiting") == "yes",
    )
    log.info(
        "console recover",
        extra={
            "host": host,
            "operator": signed.actor.name,
            "redelivered": len(recovery.redelivered),
            "expedited": len(recovery.expedited),
        },
    )
    next_until = recovery.next_until_ms
    return page(
        "recovered.html",
        signed,
        title=f"Recovered {host}",
        page="receivers",
        host=host,
        recovery=recovery,
        next_until="" if next_until is None else from_ms(next_until).isoformat(),
    )


def _clients(services: Services) -> list[str]:
    return sorted(c.name for c in services.settings.api_keys)


def _state(raw: str) -> WatchState | None:
    if not raw:
        return None
    try:
        return WatchState(raw)
    except ValueError:
        raise ValueError(f"state: {raw!r} is not a watch state") from None


def _moment(raw: str, field: str) -> datetime | None:
    """A ``datetime-local`` value (or ISO 8601) in UTC, read as UTC when it names no offset.

    Refused outside ``_MOMENTS``: the pages shift a moment by a day or a minute, which the
    calendar's first and last days cannot take (``OverflowError``, a 500 before).
    """
    if not raw.strip():
        return None
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(f"{field}: {raw!r} is not a date and time") from None
    earliest, latest = _MOMENTS
    try:
        moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
        in_range = earliest <= moment <= latest
    except OverflowError:  # its offset moves it past the calendar's first or last day
        in_range = False
    if not in_range:
        raise ValueError(f"{field}: {raw!r} is not between {earliest.year} and {latest.year}")
    return moment


def _local(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


# -- errors ---------------------------------------------------------------------------------------
def _error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, HTTPException):
        status, message = exc.status_code, exc.detail
    elif isinstance(exc, RedisError):
        status, message = 503, "Redis does not answer; try again in a moment."
    else:
        log.exception("console page failed", exc_info=exc)
        status, message = 500, "Something went wrong on our side; the logs say what."
    return page(
        "error.html",
        None,
        status_code=status,
        title=ERROR_HEADINGS.get(status, "Error"),
        heading=ERROR_HEADINGS.get(status, "Error"),
        message=message,
    )


SECURITY_HEADERS: Final = {
    # No script at all, styles and images from the console itself only.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def console_router() -> Router:
    """The console's routes under ``/console`` (wired only when ``CONSOLE_KEYS`` is set)."""
    return Router(
        path=PREFIX,
        route_handlers=[
            access.login_form,
            access.login,
            access.logout,
            overview,
            find,
            watch_page,
            confirm_action,
            act,
            receivers,
            recover_form,
            recover,
        ],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "signed": Provide(provide_signed),
        },
        # Every exception the API answers with problem+json gets a page here instead.
        exception_handlers={
            **dict.fromkeys(EXCEPTION_HANDLERS, _error_page),
            NotSignedIn: signed_in_later,
        },
        response_headers=SECURITY_HEADERS,
        include_in_schema=False,
    )
