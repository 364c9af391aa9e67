"""What follows a delivery attempt: pure rules, carried out by ``service.callbacks.series``.

An attempt ends in one of five outcomes (``service.callbacks.attempt`` classifies what the
callback did):

- ``delivered`` (2xx) → the watch ends ``delivered``, or ``failed`` when the event reported an OCR
  failure (the failure is the OCR's, the delivery succeeded);
- ``gone`` (410) → ``failed`` / ``callback_gone``, no retries;
- ``refused`` (the URL policy at connect time) → ``failed`` / ``callback_refused``;
- ``rejected`` (3xx, other 4xx) → retried up to ``CLIENT_ERROR_ATTEMPTS``, then
  ``delivery_exhausted``;
- ``retry`` (429, 5xx, timeout, network) → the next step of ``DELIVERY_SCHEDULE_S``, honouring
  ``Retry-After``; when the schedule runs out, ``failed`` / ``delivery_exhausted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import msgspec

from service.domain import backoff
from service.domain.watch import Failure, WatchState

Outcome = Literal["delivered", "retry", "gone", "rejected", "refused"]


class AttemptResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one POST to a callback came to.

    ``outcome``: ``delivered`` (2xx), ``retry`` (429, 5xx, timeout, network error), ``gone`` (410:
    stop), ``rejected`` (3xx, which is never followed, or another 4xx), ``refused`` (the URL policy
    refused the destination; ``error`` says why).
    """

    at: datetime
    status_code: int | None
    latency_ms: float
    outcome: Outcome
    error: str | None = None
    response_excerpt: str | None = None
    retry_after_s: float | None = None


class DeliveryDecision(msgspec.Struct, frozen=True, kw_only=True):
    """After an attempt: try again in ``retry_in_s``, or end in ``final_state`` (with
    ``failure`` when that is ``failed``)."""

    retry_in_s: float | None = None
    final_state: WatchState | None = None
    failure: Failure | None = None


def decide_delivery(
    result: AttemptResult,
    *,
    number: int,
    ocr_failure: Failure | None,
    schedule: Sequence[float],
) -> DeliveryDecision:
    """What follows attempt ``number`` (1-based) of a series that ended in ``result``.

    ``ocr_failure``: the failure the event reports (an ``ocr.failed`` event), or None.
    """
    outcome = result.outcome
    if outcome == "delivered":
        if ocr_failure is not None:
            return DeliveryDecision(final_state=WatchState.FAILED, failure=ocr_failure)
        return DeliveryDecision(final_state=WatchState.DELIVERED)
    if outcome == "gone":
        return _failed("callback_gone", "the callback answered 410 Gone")
    if outcome == "refused":
        return _failed("callback_refused", f"the callback URL is not allowed: {result.error}")
    if outcome == "rejected" and number >= backoff.CLIENT_ERROR_ATTEMPTS:
        return _exhausted(number, result)
    delay = backoff.next_delivery_delay(schedule, number, result.retry_after_s)
    if delay is None:
        return _exhausted(number, result)
    return DeliveryDecision(retry_in_s=delay)


def _failed(code: Literal["callback_gone", "callback_refused"], message: str) -> DeliveryDecision:
    return DeliveryDecision(
        final_state=WatchState.FAILED, failure=Failure(code=code, message=message)
    )


def _exhausted(number: int, result: AttemptResult) -> DeliveryDecision:
    last = f"HTTP {result.status_code}" if result.status_code is not None else result.error
    failure = Failure(
        code="delivery_exhausted",
        message=f"gave up after {number} attempts; the last one ended with {last}",
    )
    return DeliveryDecision(final_state=WatchState.FAILED, failure=failure)
