"""The reconciler: every overdue next step is found in its index and sent on, whatever became of
the job that should have taken it.

Jobs only make steps happen on time; the time indexes say what must happen (the poll-due set of
each group, the delivery index: ``service.domain.schedule``). So a job may be lost (a crash between
a write and its enqueue, a flushed queue), repeated, or killed at any line, and the watch is still
found once its step is overdue. A run is bounded (a page of groups, a batch of deliveries, a time
budget for the sweep), reads no keyspace ``SCAN``, and is safe when several run at once: a round
job per group and slot and a delivery job per attempt have deterministic ids, so sending the same
step twice makes one job.
"""

from __future__ import annotations

import logging
from typing import Final

import msgspec

from service.clock import wall_ms
from service.domain.schedule import overdue_ms
from service.queue import Queue
from service.storage import Store

log = logging.getLogger("ocr_relay.reconcile")

# A step later than this is taken for lost rather than merely late (a busy worker starts a
# deferred job a little after its time).
SLACK_MS: Final = 5_000
GROUPS_PER_RUN: Final = 500
DELIVERIES_PER_RUN: Final = 1_000


class ReconcileReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one run did: steps sent on because they were overdue, by kind; watches swept; how
    overdue the oldest step of each kind was (ms)."""

    rounds: int
    deliveries: int
    swept: int
    oldest_poll_ms: int
    oldest_delivery_ms: int


class Reconciler:
    """One per worker process; ``run`` is the reconcile cron job's body."""

    def __init__(self, store: Store, queue: Queue, *, slack_ms: int = SLACK_MS) -> None:
        self.store = store
        self.queue = queue
        self.slack_ms = slack_ms

    async def run(self) -> ReconcileReport:
        """Sweep, then send on overdue poll rounds and deliveries; record what was found."""
        swept = await self.store.retention.sweep_expired(now_ms=wall_ms())
        rounds, oldest_poll = await self._rounds()
        deliveries, oldest_delivery = await self._deliveries()
        report = ReconcileReport(
            rounds=rounds,
            deliveries=deliveries,
            swept=swept,
            oldest_poll_ms=oldest_poll,
            oldest_delivery_ms=oldest_delivery,
        )
        await self.store.retention.record_reconcile(
            {"poll": rounds, "delivery": deliveries},
            {"poll": oldest_poll, "delivery": oldest_delivery},
        )
        if rounds or deliveries:
            log.warning("reconciled overdue steps", extra=msgspec.structs.asdict(report))
        return report

    async def _rounds(self) -> tuple[int, int]:
        """Make sure each group of a page has its next round coming; (overdue sent, oldest ms)."""
        now = wall_ms()
        sent = 0
        oldest = 0
        for head in await self.store.schedule.group_heads(
            await self.store.schedule.next_groups(GROUPS_PER_RUN)
        ):
            if head.due_ms is None:
                await self.store.schedule.drop_group_if_empty(head.group)
                continue
            late = overdue_ms(head.due_ms, now)
            oldest = max(oldest, late)
            if head.polled:
                continue  # the round holding the group schedules its successor
            if late > self.slack_ms:
                sent += 1
                log.warning("poll round overdue, scheduling one", extra={"group": head.group})
            await self.queue.schedule_round(head.group, max(head.due_ms, now))
        return sent, oldest

    async def _deliveries(self) -> tuple[int, int]:
        """Enqueue the attempts of overdue deliveries; (jobs made, oldest ms)."""
        now = wall_ms()
        first = await self.store.schedule.oldest_delivery_ms()
        if first is None:
            return 0, 0
        sent = 0
        due = await self.store.schedule.deliveries_due(
            until_ms=now - self.slack_ms, limit=DELIVERIES_PER_RUN
        )
        for watch in await self.store.watches.get_many(due):
            if watch is None:
                continue
            attempt = watch.delivery_attempts + 1
            if await self.queue.schedule_delivery(watch.id, watch.delivery_series, attempt, 0.0):
                sent += 1
                log.warning(
                    "delivery overdue, enqueued its attempt",
                    extra={"watch_id": watch.id, "task_id": watch.task_id, "attempt": attempt},
                )
        return sent, overdue_ms(first, now)
