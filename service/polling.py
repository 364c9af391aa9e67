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
from datetime import timedelta
from typing import Final, Literal

import msgspec
from redis.exceptions import RedisError

from service import metrics
from service.clock import now_utc, to_ms, wall_ms
from service.domain import backoff
from service.domain.events import encode_event, failed_event, recognized_event
from service.domain.monite_models import OcrTask, decode_task, is_terminal
from service.domain.normalize import NormalizeContext, NotRecognizedError, normalize
from service.domain.schedule import UNGROUPED
from service.domain.schema import FailureCode
from service.domain.watch import Failure, Watch, WatchState
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
from service.queue import Queue
from service.ratelimit import Priority
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
# A batch with room takes watches up to this fraction of their interval early: one request costs
# the same for 1 or 100 ids, and an early poll only makes a result fresher.
EARLY_FRACTION: Final = 1 / 3
# A round waits at most this long for a slot of the shared budget; past it, the claimed watches are
# re-scheduled (their lease would otherwise run out while the round sleeps).
BUDGET_WAIT_S: Final = 10.0
# Tasks a list answer left out are asked for one by one, this many per request at most, within
# this time in all: many unknown ids must not hold the round (and the answers it has) hostage.
LOOKUPS_PER_BATCH: Final = 20
LOOKUP_BUDGET_S: Final = 10.0

_FAILURE_MESSAGES: Final[dict[FailureCode, str]] = {
    "ocr_error": "Monite reported status 'error' for this OCR task",
    "task_not_found": "Monite does not know this OCR task (404)",
    "deadline_exceeded": "the OCR task did not finish before the watch's deadline",
    "upstream_unauthorized": "Monite rejected our credentials even after a token refresh",
}


class Poller:
    """Runs poll rounds; one per worker process, shared by its jobs."""

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
                outcomes = _Outcomes()
                due = await self._claim(group, BATCH, outcomes, top_up=False)
                if due is None:
                    break
                if due:
                    polled += await self._poll(group, entity_id, due, outcomes)
                await self._carry_out(group, outcomes)
        finally:
            await self.store.schedule.unlock_round(group, token)
        await self._schedule_next(group, slot)
        return polled

    async def _claim(
        self, group: str, limit: int, outcomes: _Outcomes, *, top_up: bool
    ) -> list[Watch] | None:
        """Lease watches to poll (None when none was due); those past their deadline fail here."""
        ids = await self.store.schedule.claim_due(
            group, now_ms=wall_ms(), limit=limit, lease_ms=LEASE_MS, top_up=top_up
        )
        if not ids:
            return None
        watches = await self._live_watches(group, ids)
        return [w for w in watches if not await self._expire_if_late(w, outcomes)]

    async def _live_watches(self, group: str, ids: Sequence[str]) -> list[Watch]:
        found = await self.store.watches.get_many(ids)
        stale = [
            i for i, w in zip(ids, found, strict=True) if w is None or w.state != WatchState.POLLING
        ]
        await self.store.schedule.drop_due(group, stale)
        return [w for w in found if w is not None and w.state == WatchState.POLLING]

    async def _expire_if_late(self, watch: Watch, outcomes: _Outcomes) -> bool:
        if watch.deadline_at > now_utc():
            return False
        metrics.POLLS.labels("deadline").inc()
        await self._finish_failed(
            watch, outcomes, "deadline_exceeded", _FAILURE_MESSAGES["deadline_exceeded"]
        )
        return True

    async def _poll(
        self, group: str, entity_id: str | None, watches: list[Watch], outcomes: _Outcomes
    ) -> int:
        """Ask Monite about ``watches`` (and more, if the request has room); how many asked."""
        priority: Priority = "high" if any(w.polls == 0 for w in watches) else "low"
        slot = await self.monite.take_slot(priority, BUDGET_WAIT_S)
        if isinstance(slot, MoniteRateLimited):
            for watch in watches:
                await self._apply(watch, slot, outcomes)
            return len(watches)
        # The slot may have been a while coming, and more watches due by now: they ride along.
        # Under load this is what keeps requests full: 100 ids cost the budget what 1 id does.
        if len(watches) < BATCH:
            more = await self._claim(group, BATCH - len(watches), outcomes, top_up=True)
            watches = [*watches, *(more or [])]
        task_ids = {w.task_id for w in watches}
        if len(task_ids) == 1:
            answer = await self.monite.get_task(
                watches[0].task_id, entity_id, max_wait_s=BUDGET_WAIT_S, slot_taken=True
            )
            for watch in watches:
                await self._apply(watch, answer, outcomes)
            return len(watches)
        result = await self.monite.list_tasks(
            sorted(task_ids), entity_id, max_wait_s=BUDGET_WAIT_S, slot_taken=True
        )
        if not isinstance(result, MoniteListOk):
            for watch in watches:
                await self._apply(watch, result, outcomes)
            return len(watches)
        listed = _by_id(result.items)
        missing = [w for w in watches if w.task_id not in listed]
        for watch in watches:
            if watch.task_id in listed:
                await self._apply(watch, MoniteOk(status=200, body=listed[watch.task_id]), outcomes)
        if missing:
            # What the list answered goes on now, not after the slower lookups.
            await self._carry_out(group, outcomes)
            await self._look_up(missing, entity_id, outcomes)
        return len(watches)

    async def _carry_out(self, group: str, outcomes: _Outcomes) -> None:
        """Record the polls decided so far and hand the finished watches to delivery."""
        await self.store.schedule.record_polls(group, outcomes.polls)
        await self.queue.deliver_now(outcomes.handed)
        outcomes.polls.clear()
        outcomes.handed.clear()

    async def _look_up(
        self, watches: list[Watch], entity_id: str | None, outcomes: _Outcomes
    ) -> None:
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
        for task_id in list(by_task)[LOOKUPS_PER_BATCH:]:
            outcomes.polls.extend(self._retry_now(w) for w in by_task[task_id])

        async def look_up(task_id: str) -> None:
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
            for watch in by_task[task_id]:
                await self._apply(watch, answer, outcomes)

        await asyncio.gather(*(look_up(task_id) for task_id in asked))

    def _retry_now(self, watch: Watch) -> PollRecord:
        """A watch not asked about this time: due again at once, not counted as a poll."""
        now = wall_ms()
        return PollRecord(watch_id=watch.id, kind="wait", status=None, due_ms=now, early_ms=now)

    async def _apply(self, watch: Watch, answer: MoniteResult, outcomes: _Outcomes) -> None:
        """Act on Monite's answer: poll the watch again later, or finish it.

        Nothing Monite sends can raise out of here and take the watch's batch-mates down: an
        answer this code cannot act on fails its watch alone (``invalid_payload``). Redis errors
        do raise: the round ends, and its leased watches come back when their lease runs out.
        """
        try:
            await self._act_on(watch, answer, outcomes)
        except RedisError:
            raise
        except Exception as exc:
            log.exception(
                "could not act on Monite's answer",
                extra={"watch_id": watch.id, "task_id": watch.task_id},
            )
            message = f"Monite's answer could not be processed ({type(exc).__name__})"
            await self._finish_failed(watch, outcomes, "invalid_payload", message)

    async def _act_on(self, watch: Watch, answer: MoniteResult, outcomes: _Outcomes) -> None:
        ctx = {"watch_id": watch.id, "task_id": watch.task_id}
        if not isinstance(answer, MoniteOk):
            metrics.POLLS.labels(_RESULT_LABELS[type(answer)]).inc()
        if isinstance(answer, MoniteOk):
            await self._apply_task(watch, answer.body, outcomes)
        elif isinstance(answer, MoniteNotFound):
            await self._finish_failed(
                watch, outcomes, "task_not_found", _FAILURE_MESSAGES["task_not_found"]
            )
        elif isinstance(answer, MoniteRateLimited):
            outcomes.polls.append(self._next_poll(watch, "wait", None, answer.retry_after_s))
        elif isinstance(answer, MoniteUnauthorized):
            await self._finish_failed(
                watch,
                outcomes,
                "upstream_unauthorized",
                _FAILURE_MESSAGES["upstream_unauthorized"],
            )
        elif isinstance(answer, MoniteUnavailable | MoniteRejected):
            log.warning("monite poll failed, will retry", extra={**ctx, "error": str(answer)})
            retry_after = answer.retry_after_s if isinstance(answer, MoniteUnavailable) else None
            outcomes.polls.append(self._next_poll(watch, "error", None, retry_after))

    async def _apply_task(self, watch: Watch, body: bytes, outcomes: _Outcomes) -> None:
        try:
            task = decode_task(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            metrics.POLLS.labels("invalid_payload").inc()
            await self._finish_failed(
                watch, outcomes, "invalid_payload", f"Monite's task could not be decoded: {exc}"
            )
            return
        metrics.POLLS.labels(task.status if task.status in _KNOWN else "unknown").inc()
        if not is_terminal(task.status):
            if task.status != "processing":
                log.warning(
                    "unknown Monite task status, polling on",
                    extra={"watch_id": watch.id, "task_id": watch.task_id, "status": task.status},
                )
            outcomes.polls.append(self._next_poll(watch, "poll", task.status, None))
        elif task.status == "error":
            message = _FAILURE_MESSAGES["ocr_error"]
            if task.error is not None and task.error.message:
                message = f"{message}: {task.error.message}"
            await self._finish_failed(watch, outcomes, "ocr_error", message, status=task.status)
        else:
            await self._finish_recognized(watch, task, body, outcomes)

    def _next_poll(
        self,
        watch: Watch,
        kind: Literal["poll", "error", "wait"],
        status: str | None,
        retry_after_s: float | None,
    ) -> PollRecord:
        """When to poll a watch next, and from when on a batch with room may take it early."""
        if kind == "error":
            delay = backoff.upstream_error_delay(watch.poll_errors + 1, retry_after_s)
            early = delay
        else:
            polls = watch.polls + (1 if kind == "poll" else 0)
            delay = backoff.next_poll_delay(
                self.settings.poll_schedule_s, max(1, polls), retry_after_s
            )
            # Never early past a Retry-After; otherwise up to a third of the interval early.
            early = delay if retry_after_s is not None else delay * (1 - EARLY_FRACTION)
        now = now_utc()
        due_at = min(now + timedelta(seconds=delay), watch.deadline_at)
        early_at = min(now + timedelta(seconds=early), due_at)
        return PollRecord(
            watch_id=watch.id,
            kind=kind,
            status=status,
            due_ms=to_ms(due_at),
            early_ms=to_ms(early_at),
        )

    async def _finish_recognized(
        self, watch: Watch, task: OcrTask, body: bytes, outcomes: _Outcomes
    ) -> None:
        context = NormalizeContext(
            task_id=watch.task_id,
            entity_id=watch.entity_id,
            include_raw=watch.include_raw,
            body=body,
        )
        try:
            document = normalize(task, context)
        except NotRecognizedError as exc:
            await self._finish_failed(
                watch, outcomes, "invalid_payload", str(exc), status=task.status
            )
            return
        except Exception as exc:
            # normalize() is pure and tested never to raise on well-typed data; if some payload
            # still trips it, that payload fails alone instead of every watch of the round.
            log.exception(
                "normalization failed", extra={"watch_id": watch.id, "task_id": watch.task_id}
            )
            message = f"the recognized data could not be normalized ({type(exc).__name__})"
            await self._finish_failed(
                watch, outcomes, "invalid_payload", message, status=task.status
            )
            return
        event = recognized_event(
            watch_id=watch.id,
            task_id=watch.task_id,
            entity_id=watch.entity_id,
            metadata=msgspec.json.decode(watch.metadata_json),
            document=document,
            at=now_utc(),
        )
        await self._hand_to_delivery(
            watch, outcomes, event.type, encode_event(event), None, task.status
        )
        metrics.EVENT_LAG.observe(max(0.0, (now_utc() - task.updated_at).total_seconds()))

    async def _finish_failed(
        self,
        watch: Watch,
        outcomes: _Outcomes,
        code: FailureCode,
        message: str,
        *,
        status: str | None = None,
    ) -> None:
        event = failed_event(
            watch_id=watch.id,
            task_id=watch.task_id,
            entity_id=watch.entity_id,
            metadata=msgspec.json.decode(watch.metadata_json),
            code=code,
            message=message,
            at=now_utc(),
        )
        failure = Failure(code=code, message=message)
        await self._hand_to_delivery(
            watch, outcomes, event.type, encode_event(event), failure, status
        )

    async def _hand_to_delivery(
        self,
        watch: Watch,
        outcomes: _Outcomes,
        event_type: str,
        body: bytes,
        failure: Failure | None,
        status: str | None,
    ) -> None:
        event_id = new_id("evt")
        event = EventRecord(
            id=event_id, watch_id=watch.id, type=event_type, body=body, created_at=now_utc()
        )

        def mutate(w: Watch) -> Watch | None:
            if w.state != WatchState.POLLING:
                return None
            w.state = WatchState.DELIVERING
            w.event_id = event_id
            w.event_type = event_type
            w.failure = failure
            w.ocr_failure = failure
            w.delivery_series = 1
            w.delivery_attempts = 0
            w.next_attempt_at = now_utc()
            if status is not None:
                w.polls += 1
                w.last_monite_status = status
            return w

        reason = failure.code if failure else "recognized"
        # The event is stored with the change, so a watch cancelled meanwhile leaves none behind.
        updated = await self.store.watches.update(
            watch.id, mutate, reason=reason, current=watch, event=event
        )
        if updated is None:
            return  # cancelled meanwhile, or another round got there first
        log.info(
            "task finished, delivering",
            extra={"watch_id": watch.id, "task_id": watch.task_id, "event_type": event_type},
        )
        outcomes.handed.append(watch.id)

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
_KNOWN: Final = frozenset({"processing", "success", "error"})


class _Outcomes:
    """What one batch of polls decided: polls to record, watches handed to delivery."""

    __slots__ = ("handed", "polls")

    def __init__(self) -> None:
        self.polls: list[PollRecord] = []
        self.handed: list[str] = []


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
