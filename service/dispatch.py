"""Delivery series: send a watch's event to its callback until acknowledged, refused or given up.

One attempt at a time per watch: an attempt first leases the watch (``delivery_in_flight_until``),
so a duplicate job (a crash repeat, a redelivery racing an old series) finds it busy and leaves.
Every attempt is logged; the outcome decides the next step:

- ``delivered`` (2xx) → ``delivered``, or ``failed`` when the event was an ``ocr.failed``;
- ``gone`` (410) → ``failed`` / ``callback_gone``, no retries;
- ``refused`` (URL policy at connect time) → ``failed`` / ``callback_refused``;
- ``rejected`` (3xx, other 4xx) → retried up to ``CLIENT_ERROR_ATTEMPTS``, then
  ``delivery_exhausted``;
- ``retry`` (429, 5xx, timeout, network) → next step of ``DELIVERY_SCHEDULE_S``, honouring
  ``Retry-After``; when the schedule runs out, ``failed`` / ``delivery_exhausted``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

import msgspec

from service import metrics
from service.clock import now_utc
from service.delivery import DeliveryAttempt, attempt_delivery
from service.domain import backoff
from service.domain.watch import Failure, Watch, WatchState
from service.egress import CallbackClient
from service.queue import Queue
from service.sealing import Sealer, SealError
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
            result = DeliveryAttempt(
                at=started,
                status_code=None,
                latency_ms=(now_utc() - started).total_seconds() * 1000,
                error=reason,
                response_excerpt=None,
                outcome="retry",
            )
        return await self._record(watch, event.id, result)

    async def _record(self, watch: Watch, event_id: str, result: DeliveryAttempt) -> LoggedAttempt:
        number = watch.delivery_attempts + 1
        series = watch.delivery_series
        next_delay, final_state, failure = self._decide(watch, number, result)
        next_at = None if next_delay is None else now_utc() + timedelta(seconds=next_delay)
        logged = LoggedAttempt(
            event_id=event_id,
            series=series,
            attempt=number,
            at=result.at,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            outcome=result.outcome,
            error=result.error,
            response_excerpt=result.response_excerpt,
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
            if w.state == WatchState.DELIVERING and final_state is not None:
                w.state = final_state
                w.failure = failure
            return w

        reason = None if final_state is None else (failure.code if failure else "acknowledged")
        settled = await self.store.watches.update(
            watch.id, settle, reason=reason, current=watch, attempt=logged
        )
        ctx = {
            "watch_id": watch.id,
            "task_id": watch.task_id,
            "event_id": event_id,
            "attempt": number,
            "status_code": result.status_code,
            "outcome": result.outcome,
        }
        log.info("delivery attempt", extra=ctx)
        if (
            settled is not None
            and settled.state == WatchState.DELIVERING
            and next_delay is not None
        ):
            await self.queue.schedule_delivery(watch.id, series, number + 1, next_delay)
        return logged

    def _decide(
        self, watch: Watch, number: int, result: DeliveryAttempt
    ) -> tuple[float | None, WatchState | None, Failure | None]:
        """(delay of the next attempt, final state, failure) after attempt ``number``."""
        outcome = result.outcome
        if outcome == "delivered":
            if watch.ocr_failure is not None:
                return None, WatchState.FAILED, watch.ocr_failure
            return None, WatchState.DELIVERED, None
        if outcome == "gone":
            return (
                None,
                WatchState.FAILED,
                Failure(code="callback_gone", message="the callback answered 410 Gone"),
            )
        if outcome == "refused":
            return (
                None,
                WatchState.FAILED,
                Failure(
                    code="callback_refused",
                    message=f"the callback URL is not allowed: {result.error}",
                ),
            )
        if outcome == "rejected" and number >= backoff.CLIENT_ERROR_ATTEMPTS:
            return None, WatchState.FAILED, _exhausted(number, result)
        delay = backoff.next_delivery_delay(
            self.settings.delivery_schedule_s, number, result.retry_after_s
        )
        if delay is None:
            return None, WatchState.FAILED, _exhausted(number, result)
        return delay, None, None


class Busy(msgspec.Struct, frozen=True):
    """Another attempt holds the watch until ``until``; ``attempt`` of ``series`` comes next."""

    until: datetime
    series: int
    attempt: int

    def wait_s(self) -> float:
        """Seconds to wait before trying again: until the lease ends, at least one."""
        return max(1.0, (self.until - now_utc()).total_seconds())


def _exhausted(number: int, result: DeliveryAttempt) -> Failure:
    last = f"HTTP {result.status_code}" if result.status_code is not None else result.error
    return Failure(
        code="delivery_exhausted",
        message=f"gave up after {number} attempts; the last one ended with {last}",
    )
