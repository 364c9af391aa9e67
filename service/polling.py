"""Poll rounds: ask Monite about every due watch of one group, batched, and act on the answers.

A round claims up to ``BATCH`` due watches of a group (one Monite entity) with a lease, asks
Monite once for all of them (``GET /ocr_tasks?id__in=…``; a single watch uses
``GET /ocr_tasks/{id}``), then per watch either schedules the next poll, or stores the final event
and hands the watch to delivery. It repeats while watches are due, for at most ``ROUND_BUDGET_S``,
then makes sure the next round is scheduled for the group's earliest due watch.

A round takes its slot of the shared rate budget before it sends, then tops the request up with
the watches that came due while it waited, so requests leave full when the budget binds. A request
with room is also filled with watches that are not due yet but whose "early" time has come (two
thirds into their interval): one request costs the same for 1 or 100 ids, and an early poll only
makes a result fresher. Polls that leave a watch polling are recorded for the whole batch in one
Redis round trip, and the watches a batch finished go to delivery in one job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import msgspec

from service import metrics
from service.clock import now_utc, to_ms, wall_ms
from service.domain.duplicates import duplicate_fingerprint
from service.domain.polling import (
    FAILURE_MESSAGES,
    Finish,
    PollAgain,
    PollDecision,
    Recognized,
    decide_on_task,
    failed,
    next_poll,
    recognized,
)
from service.domain.schedule import UNGROUPED
from service.domain.schema import RelatedEvent
from service.domain.watch import Watch, WatchState
from service.ids import new_id
from service.monite import (
    MoniteClient,
    MoniteListOk,
    MoniteNotFound,
    MoniteOk,
    MoniteRateLimited,
    MoniteRejected,
    MoniteResult,
    MoniteUnauthorized,
    MoniteUnavailable,
)
from service.monite.budget import Priority
from service.queue import Queue
from service.settings import Settings
from service.storage import Store
from service.storage.events import EventRecord
from service.storage.schedule import PollRecord

log = logging.getLogger("ocr_relay.polling")

BATCH: Final = 100
LEASE_MS: Final = 60_000
# One round polls a group at a time: concurrent rounds would each hold part of the due watches while
# waiting for the budget, and send part-full requests. The lock lapses by itself if its worker dies
# (an iteration waits at most BUDGET_WAIT_S for the budget, plus the Monite call).
ROUND_LOCK_MS: Final = 30_000
ROUND_BUDGET_S: Final = 20.0
# A round waits at most this long for a slot of the shared budget; past it, the claimed watches are
# re-scheduled (their lease would otherwise run out while the round sleeps).
BUDGET_WAIT_S: Final = 10.0
# Tasks a list answer left out are asked for one by one, this many per request at most, within
# this time in all: many unknown ids must not hold the round (and the answers it has) hostage.
LOOKUPS_PER_BATCH: Final = 20
LOOKUP_BUDGET_S: Final = 10.0

# What applying one answer came to: a poll to record, the id of a watch handed to delivery, or
# nothing (the watch changed meanwhile).
Applied = PollRecord | str | None


class Poller:
    """Runs poll rounds; one per worker process, shared by its jobs. Decisions are the domain's
    (``service.domain.polling``); this class claims, asks Monite and carries them out.

    Over 200 lines, for a reason: one round's steps (claim, ask, look up, apply, hand over,
    schedule the next) read top to bottom in one place, and each is short."""

    def __init__(
        self, settings: Settings, store: Store, queue: Queue, monite: MoniteClient
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.monite = monite

    async def run_round(self, group: str, slot: int | None = None) -> int:
        """Poll every due watch of ``group``; returns how many watches were polled."""
        token = new_id("rnd")
        if not await self.store.schedule.lock_round(group, token, ROUND_LOCK_MS):
            return 0  # the round polling this group takes every watch that is due meanwhile
        entity_id = None if group == UNGROUPED else group
        started = time.monotonic()
        polled = 0
        try:
            while time.monotonic() - started < ROUND_BUDGET_S:
                if not await self.store.schedule.extend_round(group, token, ROUND_LOCK_MS):
                    break  # lapsed (a very slow iteration): another round may be polling now
                claimed = await self._claim(group, BATCH, top_up=False)
                if claimed is None:
                    break
                due, applied = claimed
                if due:
                    polled += len(due)
                    applied += await self._poll(group, entity_id, due)
                await self._carry_out(group, applied)
        finally:
            await self.store.schedule.unlock_round(group, token)
        await self._schedule_next(group, slot)
        return polled

    async def _claim(
        self, group: str, limit: int, *, top_up: bool
    ) -> tuple[list[Watch], list[Applied]] | None:
        """Lease watches to poll (None when none was due); those past their deadline are
        finished here instead (the second list)."""
        ids = await self.store.schedule.claim_due(
            group, now_ms=wall_ms(), limit=limit, lease_ms=LEASE_MS, top_up=top_up
        )
        if not ids:
            return None
        found = await self.store.watches.get_many(ids)
        stale = [
            i for i, w in zip(ids, found, strict=True) if w is None or w.state != WatchState.POLLING
        ]
        await self.store.schedule.drop_due(group, stale)
        live = [w for w in found if w is not None and w.state == WatchState.POLLING]
        now = now_utc()
        late = [w for w in live if w.deadline_at <= now]
        metrics.POLLS.labels("deadline").inc(len(late))
        expired: list[Applied] = [
            await self._hand_to_delivery(
                w, failed(w, "deadline_exceeded", FAILURE_MESSAGES["deadline_exceeded"], at=now)
            )
            for w in late
        ]
        return [w for w in live if w.deadline_at > now], expired

    async def _poll(self, group: str, entity_id: str | None, watches: list[Watch]) -> list[Applied]:
        """Ask Monite about ``watches`` (more, if the request has room); apply the answers."""
        priority: Priority = "high" if any(w.polls == 0 for w in watches) else "low"
        slot = await self.monite.take_slot(priority, BUDGET_WAIT_S)
        if isinstance(slot, MoniteRateLimited):
            return [await self._apply(watch, slot) for watch in watches]
        applied: list[Applied] = []
        # The slot may have been a while coming, and more watches due by now: they ride along.
        # Under load this is what keeps requests full: 100 ids cost the budget what 1 id does.
        if len(watches) < BATCH:
            more = await self._claim(group, BATCH - len(watches), top_up=True)
            if more is not None:
                watches = [*watches, *more[0]]
                applied += more[1]
        task_ids = {w.task_id for w in watches}
        if len(task_ids) == 1:
            answer = await self.monite.get_task(
                watches[0].task_id, entity_id, max_wait_s=BUDGET_WAIT_S, slot_taken=True
            )
            return applied + [await self._apply(watch, answer) for watch in watches]
        result = await self.monite.list_tasks(
            sorted(task_ids), entity_id, max_wait_s=BUDGET_WAIT_S, slot_taken=True
        )
        if not isinstance(result, MoniteListOk):
            return applied + [await self._apply(watch, result) for watch in watches]
        listed = _by_id(result.items)
        missing = [w for w in watches if w.task_id not in listed]
        for watch in watches:
            if watch.task_id in listed:
                ok = MoniteOk(status=200, body=listed[watch.task_id])
                applied.append(await self._apply(watch, ok))
        if not missing:
            return applied
        # What the list answered goes on now, not after the slower lookups.
        await self._carry_out(group, applied)
        return await self._look_up(missing, entity_id)

    async def _look_up(self, watches: list[Watch], entity_id: str | None) -> list[Applied]:
        """Ask for the tasks a list answer left out one by one: only a GET by id tells a task
        Monite does not know (404) from one of another entity or one the page had no room for.

        Bounded, so that many unknown ids cannot livelock a round: at most ``LOOKUPS_PER_BATCH``
        tasks, concurrently, each given ``LOOKUP_BUDGET_S`` in all; each answer is applied as it
        comes. The tasks left over come back at once, to the next request.
        """
        by_task: dict[str, list[Watch]] = {}
        # Those that failed most often go first: a failed list request counts against every
        # watch in it, so one always left over would back off further and further.
        for watch in sorted(watches, key=lambda w: -w.poll_errors):
            by_task.setdefault(watch.task_id, []).append(watch)
        asked = list(by_task)[:LOOKUPS_PER_BATCH]
        now = wall_ms()
        applied: list[Applied] = [
            PollRecord(watch_id=w.id, kind="wait", status=None, due_ms=now, early_ms=now)
            for task_id in list(by_task)[LOOKUPS_PER_BATCH:]
            for w in by_task[task_id]
        ]

        async def look_up(task_id: str) -> list[Applied]:
            answer: MoniteResult
            try:
                answer = await asyncio.wait_for(
                    self.monite.get_task(
                        task_id, entity_id, priority="low", max_wait_s=LOOKUP_BUDGET_S
                    ),
                    LOOKUP_BUDGET_S,
                )
            except TimeoutError:
                answer = MoniteUnavailable(
                    status=None, error=f"no answer within {LOOKUP_BUDGET_S:g} s"
                )
            return [await self._apply(watch, answer) for watch in by_task[task_id]]

        for found in await asyncio.gather(*(look_up(task_id) for task_id in asked)):
            applied += found
        return applied

    async def _apply(self, watch: Watch, answer: MoniteResult) -> Applied:
        """Carry out what Monite's answer means for the watch: poll it again, or finish it."""
        now = now_utc()
        try:
            decision = self._decide(watch, answer, now)
        except Exception as exc:
            # The decision is pure: whatever raises there came with Monite's answer, and fails
            # this watch alone, never its batch-mates.
            log.exception(
                "could not act on Monite's answer",
                extra={"watch_id": watch.id, "task_id": watch.task_id},
            )
            message = f"Monite's answer could not be processed ({type(exc).__name__})"
            decision = failed(watch, "invalid_payload", message, at=now)
        if isinstance(decision, Recognized):
            event_id = new_id("evt")
            earlier = await self._earlier_duplicate(watch, decision, event_id)
            return await self._hand_to_delivery(
                watch,
                recognized(watch, decision, at=now, earlier=earlier),
                event_id,
                document_number=decision.document.document_number,
            )
        if isinstance(decision, Finish):
            return await self._hand_to_delivery(watch, decision)
        if decision.kind == "error":
            log.warning(
                "monite poll failed, will retry",
                extra={"watch_id": watch.id, "task_id": watch.task_id, "error": str(answer)},
            )
        elif decision.status not in (None, "processing"):
            log.warning(
                "unknown Monite task status, polling on",
                extra={"watch_id": watch.id, "task_id": watch.task_id, "status": decision.status},
            )
        due_at, early_at = next_poll(watch, decision, self.settings.poll_schedule_s, now=now)
        return PollRecord(
            watch_id=watch.id,
            kind=decision.kind,
            status=decision.status,
            due_ms=to_ms(due_at),
            early_ms=to_ms(early_at),
        )

    def _decide(self, watch: Watch, answer: MoniteResult, now: datetime) -> PollDecision:
        """The domain's decision on one answer (and the poll counted by what it found)."""
        if isinstance(answer, MoniteOk):
            decision, label = decide_on_task(watch, answer.body, at=now)
            metrics.POLLS.labels(label).inc()
            return decision
        metrics.POLLS.labels(_RESULT_LABELS[type(answer)]).inc()
        if isinstance(answer, MoniteNotFound):
            return failed(watch, "task_not_found", FAILURE_MESSAGES["task_not_found"], at=now)
        if isinstance(answer, MoniteUnauthorized):
            message = FAILURE_MESSAGES["upstream_unauthorized"]
            return failed(watch, "upstream_unauthorized", message, at=now)
        if isinstance(answer, MoniteRateLimited):
            return PollAgain(kind="wait", retry_after_s=answer.retry_after_s)
        retry_after = answer.retry_after_s if isinstance(answer, MoniteUnavailable) else None
        return PollAgain(kind="error", retry_after_s=retry_after)

    async def _earlier_duplicate(
        self, watch: Watch, decision: Recognized, event_id: str
    ) -> RelatedEvent | None:
        """The same client's earlier event of the same document (seller, number, total), if any;
        else this document becomes the one later duplicates point at."""
        fingerprint = duplicate_fingerprint(decision.document)
        if fingerprint is None:
            return None
        first = await self.store.duplicates.first_of(watch.client, fingerprint, watch.id, event_id)
        if first is None or first[0] == watch.id:  # a re-poll of the same task is no duplicate
            return None
        return RelatedEvent(watch_id=first[0], event_id=first[1])

    async def _hand_to_delivery(
        self,
        watch: Watch,
        finish: Finish,
        event_id: str | None = None,
        *,
        document_number: str | None = None,
    ) -> str | None:
        """Store the event and move the watch to ``delivering`` in one write (filed under its
        ``document_number`` for the console's search); its id, or None when the watch changed
        meanwhile (cancelled, or another round got there first)."""
        event_id = event_id or new_id("evt")
        event = EventRecord(
            id=event_id,
            watch_id=watch.id,
            type=finish.event_type,
            body=finish.body,
            created_at=now_utc(),
        )

        def mutate(w: Watch) -> Watch | None:
            if w.state != WatchState.POLLING:
                return None
            w.state = WatchState.DELIVERING
            w.event_id = event_id
            w.event_type = finish.event_type
            w.failure = finish.failure
            w.ocr_failure = finish.failure
            w.delivery_series = 1
            w.delivery_attempts = 0
            w.next_attempt_at = now_utc()
            w.ocr_finished_at = finish.finished_at or event.created_at
            if finish.status is not None:
                w.polls += 1
                w.last_monite_status = finish.status
            return w

        reason = finish.failure.code if finish.failure else "recognized"
        # The event is stored with the change, so a watch cancelled meanwhile leaves none behind.
        updated = await self.store.watches.update(
            watch.id,
            mutate,
            reason=reason,
            current=watch,
            event=event,
            document_number=document_number,
        )
        if updated is None:
            return None
        log.info(
            "task finished, delivering",
            extra={"watch_id": watch.id, "task_id": watch.task_id, "event_type": event.type},
        )
        if finish.finished_at is not None:
            lag = (now_utc() - finish.finished_at).total_seconds()
            metrics.EVENT_LAG.observe(max(0.0, lag))
        return watch.id

    async def _carry_out(self, group: str, applied: list[Applied]) -> None:
        """Record the polls decided so far and hand the finished watches to delivery (in one
        job: only an accelerator, the delivery index holds their step)."""
        await self.store.schedule.record_polls(
            group, [a for a in applied if isinstance(a, PollRecord)]
        )
        await self.queue.deliver_now([a for a in applied if isinstance(a, str)])
        applied.clear()

    async def _schedule_next(self, group: str, slot: int | None) -> None:
        earliest = await self.store.schedule.earliest_due_ms(group)
        if earliest is None:
            await self.store.schedule.drop_group_if_empty(group)
            return
        await self.queue.schedule_round(group, max(earliest, wall_ms()), after_slot=slot)


_RESULT_LABELS: Final[dict[type, str]] = {
    MoniteNotFound: "not_found",
    MoniteRateLimited: "rate_limited",
    MoniteUnauthorized: "unauthorized",
    MoniteUnavailable: "unavailable",
    MoniteRejected: "unavailable",
}


class _TaskHead(msgspec.Struct):
    """Just enough of a task to route a list item to its watches."""

    id: str


def _by_id(items: Sequence[bytes]) -> dict[str, bytes]:
    """The raw items of a list answer by task id; an item without a readable id is left out
    (asked for alone, where the decode failure becomes its watch's outcome)."""
    found: dict[str, bytes] = {}
    for raw in items:
        try:
            found[msgspec.json.decode(raw, type=_TaskHead).id] = raw
        except (msgspec.DecodeError, RecursionError):
            continue
    return found
