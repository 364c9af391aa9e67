"""What each console page shows, read from the store with bounded work per page.

The pages' handlers (``service.console.pages``) turn requests into these calls and render what
they return; nothing here knows HTTP. Every read is bounded: the overview reads an hour of minute
hashes, a search at most ``FIND_SCAN`` index entries per client and page, the receivers page six
ten-minute hashes and a page of each troubled set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from service.clock import to_ms, wall_ms
from service.domain.activity import (
    lag_histogram,
    merge_counts,
    percentile,
)
from service.domain.watch import TERMINAL_STATES, Transition, Watch, WatchState, can_redeliver
from service.storage import Store
from service.storage.activity import WORKER_GONE_MS, ReceiverCounts
from service.storage.events import EventRecord, LoggedAttempt
from service.storage.watches import cursor_member, index_member, page_cursor

PAGE_SIZE: Final = 25
FIND_SCAN: Final = 500
# How many of a host's troubled watches its receiver page lists.
HOST_WATCHES: Final = 50


class Series(msgspec.Struct, frozen=True):
    """A per-minute count over the last hour, oldest first, and its total."""

    values: list[float]
    total: float


class WorkerRow(msgspec.Struct, frozen=True):
    """A worker process, how long ago it last beat, and whether that counts as alive."""

    name: str
    seen_ago_ms: int
    alive: bool


class Overview(msgspec.Struct, frozen=True, kw_only=True):
    """The overview page: the state of the whole service at a glance."""

    states: list[tuple[str, int]]
    delivered: Series
    failed: Series
    failed_attempts: Series
    monite_requests_per_s: Series
    monite_429: Series
    monite_budget_per_s: float
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    oldest_open: tuple[str, int] | None
    workers: list[WorkerRow]


async def overview(store: Store, budget_per_s: float) -> Overview:
    """Watches by state, the last hour's deliveries, failures, lag and Monite traffic, the
    oldest unfinished watch and the workers' heartbeats."""
    now_ms = wall_ms()
    minutes = await store.activity.minutes(now_ms)
    counts = await store.retention.state_counts()
    oldest = await store.activity.oldest_open()
    hour = merge_counts(minutes)
    histogram = lag_histogram(hour)
    return Overview(
        states=[(s.value, max(0, counts.get(f"current:{s.value}", 0))) for s in WatchState],
        delivered=_series(minutes, "entered:delivered"),
        failed=_series(minutes, "entered:failed"),
        failed_attempts=_series(
            minutes, "attempt:retry", "attempt:rejected", "attempt:gone", "attempt:refused"
        ),
        monite_requests_per_s=_series(minutes, "monite:requests", per_s=True),
        monite_429=_series(minutes, "monite:429"),
        monite_budget_per_s=budget_per_s,
        lag_p50_ms=percentile(histogram, 0.5),
        lag_p99_ms=percentile(histogram, 0.99),
        oldest_open=None if oldest is None else (oldest[0], now_ms - oldest[1]),
        workers=[
            WorkerRow(
                name=w.name,
                seen_ago_ms=now_ms - w.seen_ms,
                alive=now_ms - w.seen_ms <= WORKER_GONE_MS,
            )
            for w in await store.activity.workers()
        ],
    )


def _series(minutes: Sequence[dict[str, int]], *fields: str, per_s: bool = False) -> Series:
    values = [float(sum(m.get(f, 0) for f in fields)) for m in minutes]
    total = sum(values)
    if per_s:
        values = [v / 60 for v in values]
    return Series(values=values, total=total)


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    """The Find page's form: a search term and filters (all optional)."""

    q: str = ""
    client: str = ""
    state: WatchState | None = None
    failure_code: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, watch: Watch) -> bool:
        """Whether a watch passes the filters (not the search term)."""
        created = watch.created_at
        return (
            (not self.client or watch.client == self.client)
            and (self.state is None or watch.state == self.state)
            and (
                not self.failure_code
                or (watch.failure is not None and watch.failure.code == self.failure_code)
            )
            and (self.since is None or created >= self.since)
            and (self.until is None or created <= self.until)
        )


class FindPage(msgspec.Struct, frozen=True):
    """Watches found, newest first, and the cursor of the next page (None: the last)."""

    items: list[Watch]
    next_cursor: str | None


async def find(
    store: Store, clients: Sequence[str], filters: Filters, cursor: str | None
) -> FindPage:
    """The watches a search term names (a watch id, event id, Monite task id or document
    number), or else every client's watches that pass the filters, a page at a time.

    ``clients`` are the API's clients: the console's cross-client listing merges their indexes
    (each read from the same cursor, as members sort the same way in every index).
    """
    if filters.q:
        found = await _search(store, filters.q.strip())
        items = [w for w in found if filters.matches(w)]
        items.sort(key=index_member, reverse=True)
        return FindPage(items=items[:100], next_cursor=None)
    names = [filters.client] if filters.client else list(clients)
    pages = [
        await store.watches.list_watches(
            name,
            state=filters.state,
            cursor=cursor,
            limit=PAGE_SIZE,
            scan_budget=FIND_SCAN,
            matches=filters.matches,
            created_before_ms=None if filters.until is None else to_ms(filters.until) + 1,
        )
        for name in names
    ]
    # Below the newest point where a client's page stopped, its watches are not known yet:
    # only those at or above it (the stop itself was read) can be shown in order now; the rest
    # come on the next page, which starts below the stop.
    stops = [cursor_member(p.next_cursor) for p in pages if p.next_cursor is not None]
    frontier = max(stops) if stops else None
    merged = sorted((w for p in pages for w in p.items), key=index_member, reverse=True)
    known = [w for w in merged if frontier is None or index_member(w) >= frontier]
    shown = known[:PAGE_SIZE]
    if len(known) > PAGE_SIZE:
        next_cursor: str | None = page_cursor(index_member(shown[-1]))
    elif frontier is not None and not _before_range(frontier, filters):
        next_cursor = page_cursor(frontier)
    else:
        next_cursor = None
    return FindPage(items=shown, next_cursor=next_cursor)


def _before_range(member: str, filters: Filters) -> bool:
    """Whether an index position lies before the filters' time range (nothing more to find)."""
    return filters.since is not None and int(member.partition(":")[0]) < to_ms(filters.since)


async def _search(store: Store, term: str) -> list[Watch]:
    ids: set[str] = set()
    if term.startswith("evt_"):
        event = await store.events.get(term)
        if event is not None:
            ids.add(event.watch_id)
    elif term.startswith("wat_"):
        ids.add(term)
    else:
        ids.update(await store.activity.find("task", term.lower()))
        ids.update(await store.activity.find("number", term))
    watches = await store.watches.get_many(sorted(ids))
    return [w for w in watches if w is not None]


class WatchPageView(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the watch page shows."""

    watch: Watch
    transitions: list[Transition]
    attempts: list[LoggedAttempt]
    event: EventRecord | None
    event_pretty: str | None
    document: dict[str, Any] | None
    metadata_pretty: str
    can_redeliver: bool
    can_cancel: bool


async def watch_page(store: Store, watch_id: str) -> WatchPageView | None:
    """A watch with its history, attempts and event; None when unknown."""
    watch = await store.watches.get(watch_id)
    if watch is None:
        return None
    event = None if watch.event_id is None else await store.events.get(watch.event_id)
    body = None if event is None else _json(event.body)
    data = body.get("data") if isinstance(body, dict) else None
    document = data.get("document") if isinstance(data, dict) else None
    return WatchPageView(
        watch=watch,
        transitions=await store.watches.transitions(watch_id),
        attempts=await store.events.attempts(watch_id),
        event=event,
        event_pretty=None if body is None else json.dumps(body, indent=2, ensure_ascii=False),
        document=document if isinstance(document, dict) else None,
        metadata_pretty=json.dumps(_json(watch.metadata_json), indent=2, ensure_ascii=False),
        can_redeliver=can_redeliver(watch.state, event is not None),
        can_cancel=watch.state not in TERMINAL_STATES,
    )


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


class ReceiverRow(msgspec.Struct, frozen=True, kw_only=True):
    """A callback host over the last hour."""

    host: str
    attempts: int
    ok: int
    failed: int
    success_rate: float | None
    mean_latency_ms: float | None
    last_attempt_ago_ms: int | None
    troubled_24h: int


async def receivers(store: Store) -> list[ReceiverRow]:
    """Every callback host attempted within a day: the last hour's attempts, success rate and
    latency, and how many of its watches had a failed attempt in the last 24 hours."""
    now_ms = wall_ms()
    hour = {r.host: r for r in await store.activity.receivers(now_ms)}
    rows = []
    for host, last_ms in await store.activity.known_receivers():
        if now_ms - last_ms > 86_400_000:
            continue
        counts = hour.get(host, ReceiverCounts(host=host, ok=0, failed=0, latency_ms_sum=0))
        troubled = await store.activity.count_troubled("host", host, since_ms=now_ms - 86_400_000)
        rows.append(
            ReceiverRow(
                host=host,
                attempts=counts.attempts,
                ok=counts.ok,
                failed=counts.failed,
                success_rate=None if not counts.attempts else counts.ok / counts.attempts,
                mean_latency_ms=(
                    None if not counts.attempts else counts.latency_ms_sum / counts.attempts
                ),
                last_attempt_ago_ms=now_ms - last_ms,
                troubled_24h=troubled,
            )
        )
    return sorted(rows, key=lambda r: (-(r.failed + r.troubled_24h), r.host))


async def host_watches(store: Store, host: str, since: datetime, until: datetime) -> list[Watch]:
    """A host's watches whose delivery is failing or failed, their last failed attempt in the
    range, newest first (at most ``HOST_WATCHES``)."""
    found = await store.activity.troubled(
        "host", host, since_ms=to_ms(since), until_ms=to_ms(until), limit=HOST_WATCHES
    )
    watches = await store.watches.get_many([watch_id for watch_id, _ in found])
    return [w for w in watches if w is not None and _troubled(w)]


def _troubled(watch: Watch) -> bool:
    return watch.state == WatchState.FAILED or (
        watch.state == WatchState.DELIVERING and watch.delivery_attempts > 0
    )
