"""Delivery series: send a watch's event to its callback until acknowledged, refused or given up.

One attempt at a time per watch: an attempt first leases the watch (``delivery_in_flight_until``),
so a duplicate job (a crash repeat, a redelivery racing an old series) finds it busy and leaves.
Every attempt is logged; ``service.domain.delivery.decide_delivery`` says what follows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

import msgspec

from service import metrics
from service.callbacks.attempt import attempt_delivery
from service.callbacks.egress import CallbackClient
from service.callbacks.sealing import Sealer, SealError
from service.clock import now_utc
from service.domain.delivery import AttemptResult, decide_delivery
from service.domain.watch import Watch, WatchState
from service.queue import Queue
from service.settings import Settings
from service.storage import Store
from service.storage.events import LoggedAttempt

log = logging.getLogger("ocr_relay.dispatch")

# How long past its timeout an attempt may hold the lease before a crash repeat may try again.
_LEASE_SLACK_S: Final = 30.0


class Dispatcher:
    """Makes delivery attempts; one per worker process, shared by its jobs."""

    def __init__(
        self, settings: Settings, store: Store, queue: Queue, client: CallbackClient
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.client = client
        self.sealer = Sealer.from_settings(settings)

    async def deliver_many(self, watch_ids: Sequence[str]) -> list[LoggedAttempt | Busy | None]:
        """``deliver`` for several watches at once (the watches a poll round finished)."""
        watches = await self.store.watches.get_many(watch_ids)
        return await asyncio.gather(
            *(self.deliver(i, current=w) for i, w in zip(watch_ids, watches, strict=True))
        )

    async def deliver(
        self, watch_id: str, *, current: Watch | None = None
    ) -> LoggedAttempt | Busy | None:
        """Make the next attempt of the watch's current series, if it is due one.

        Returns the logged attempt; ``Busy`` when another attempt holds the watch (the caller
        tries again when that lease ends, which covers a worker that died mid-attempt); None
        when there is nothing to deliver (cancelled, delivered, unknown). ``current`` is a copy of
        the watch the caller has just read.
        """
        started = now_utc()
        lease_until = started + timedelta(seconds=self.settings.delivery_timeout_s + _LEASE_SLACK_S)

        def lease(w: Watch) -> Watch | None:
            if w.state != WatchState.DELIVERING or w.event_id is None:
                return None
            if w.delivery_in_flight_until is not None and w.delivery_in_flight_until > started:
                return None
            w.delivery_in_flight_until = lease_until
            return w

        watch = await self.store.watches.update(watch_id, lease, current=current)
        if watch is None or watch.event_id is None:
            current = await self.store.watches.get(watch_id)
            if (
                current is not None
                and current.state == WatchState.DELIVERING
                and current.delivery_in_flight_until is not None
                and current.delivery_in_flight_until > started
            ):
                return Busy(
                    until=current.delivery_in_flight_until,
                    series=current.delivery_series,
                    attempt=current.delivery_attempts + 1,
                )
            return None
        event = await self.store.events.get(watch.event_id)
        if event is None:
            log.error("event of a delivering watch is missing", extra={"watch_id": watch_id})
            return None
        try:
            result = await attempt_delivery(
                self.client,
                url=watch.callback_url,
                event_id=event.id,
                body=event.body,
                secrets=self.sealer.unseal_all(watch.active_secrets(started)),
                timeout_s=self.settings.delivery_timeout_s,
            )
        except Exception as exc:
            # Recorded as a failed attempt, so the series goes on (and ends) on its schedule: a
            # watch never stays `delivering` with nothing scheduled.
            log.exception("delivery attempt crashed", extra={"watch_id": watch_id})
            reason = (
                "the webhook secret cannot be unsealed with the configured SECRETS_KEY"
                if isinstance(exc, SealError)
                else f"internal error: {type(exc).__name__}"
            )
            result = AttemptResult(
                at=started,
                status_code=None,
                latency_ms=(now_utc() - started).total_seconds() * 1000,
                error=reason,
                response_excerpt=None,
                outcome="retry",
            )
        return await self._record(watch, event.id, result)

    async def _record(self, watch: Watch, event_id: str, result: AttemptResult) -> LoggedAttempt:
        number = watch.delivery_attempts + 1
        series = watch.delivery_series
        decision = decide_delivery(
            result,
            number=number,
            ocr_failure=watch.ocr_failure,
            schedule=self.settings.delivery_schedule_s,
        )
        next_at = (
            None
            if decision.retry_in_s is None
            else now_utc() + timedelta(seconds=decision.retry_in_s)
        )
        logged = LoggedAttempt(
            **msgspec.structs.asdict(result),
            event_id=event_id,
            series=series,
            attempt=number,
            next_attempt_at=next_at,
        )
        metrics.DELIVERY_ATTEMPTS.labels(result.outcome).inc()
        metrics.DELIVERY_LATENCY.observe(result.latency_ms / 1000)

        def settle(w: Watch) -> Watch | None:
            if w.delivery_series != series:
                return None  # a redelivery started a new series meanwhile
            w.delivery_attempts = number
            w.delivery_in_flight_until = None
            w.next_attempt_at = next_at
            if w.state == WatchState.DELIVERING and decision.final_state is not None:
                w.state = decision.final_state
                w.failure = decision.failure
            return w

        reason = None
        if decision.final_state is not None:
            reason = decision.failure.code if decision.failure else "acknowledged"
        settled = await self.store.watches.update(
            watch.id, settle, reason=reason, current=watch, attempt=logged
        )
        log.info(
            "delivery attempt",
            extra={
                "watch_id": watch.id,
                "task_id": watch.task_id,
                "event_id": event_id,
                "attempt": number,
                "status_code": result.status_code,
                "outcome": result.outcome,
            },
        )
        if (
            settled is not None
            and settled.state == WatchState.DELIVERING
            and decision.retry_in_s is not None
        ):
            # Only an accelerator: the delivery index holds the step if this enqueue is lost.
            await self.queue.schedule_delivery(watch.id, series, number + 1, decision.retry_in_s)
        return logged


class Busy(msgspec.Struct, frozen=True):
    """Another attempt holds the watch until ``until``; ``attempt`` of ``series`` comes next."""

    until: datetime
    series: int
    attempt: int

    def wait_s(self) -> float:
        """Seconds to wait before trying again: until the lease ends, at least one."""
        return max(1.0, (self.until - now_utc()).total_seconds())
