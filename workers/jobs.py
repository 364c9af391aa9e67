"""The arq job functions: thin, they call the service modules with ids only."""

from __future__ import annotations

from typing import Any

from arq import Retry

from service.callbacks.series import Busy, Dispatcher
from service.polling import Poller
from service.queue import Queue
from service.reconcile import Reconciler


async def poll_round(ctx: dict[str, Any], group: str, slot: int) -> int:
    """Poll the due watches of one group (one Monite entity); returns how many were polled."""
    poller: Poller = ctx["poller"]
    return await poller.run_round(group, slot)


async def deliver(ctx: dict[str, Any], watch_id: str) -> str | None:
    """Make the next delivery attempt of a watch; returns its outcome."""
    dispatcher: Dispatcher = ctx["dispatcher"]
    result = await dispatcher.deliver(watch_id)
    if isinstance(result, Busy):
        raise Retry(defer=result.wait_s())
    return None if result is None else result.outcome


async def deliver_batch(ctx: dict[str, Any], watch_ids: list[str]) -> int:
    """Make the first delivery attempts of watches a poll round finished; returns how many."""
    dispatcher: Dispatcher = ctx["dispatcher"]
    queue: Queue = ctx["queue"]
    results = await dispatcher.deliver_many(watch_ids)
    for watch_id, result in zip(watch_ids, results, strict=True):
        if isinstance(result, Busy):  # a repeat of this job after a crash, mid-attempt
            await queue.schedule_delivery(watch_id, result.series, result.attempt, result.wait_s())
    return sum(1 for r in results if r is not None and not isinstance(r, Busy))


async def reconcile(ctx: dict[str, Any]) -> int:
    """Safety net: send on every overdue next step (poll rounds, deliveries) whose job was lost,
    and sweep what expired watches left behind; returns how many steps were sent on."""
    reconciler: Reconciler = ctx["reconciler"]
    report = await reconciler.run()
    return report.rounds + report.deliveries
