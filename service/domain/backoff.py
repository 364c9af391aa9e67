"""Poll and delivery schedules: when to try again, with jitter, honouring ``Retry-After``.

Jitter spreads retries of many watches so that they do not hit Monite or a receiver in lockstep; it
is "equal jitter" (half fixed, half random) so that a delay never collapses to zero.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

# Attempts on a callback answering 3xx/4xx (not 410, not 429): a typo in the receiver's route should
# surface soon, a deploy that briefly returns 404 should not lose the event.
CLIENT_ERROR_ATTEMPTS: Final = 3
# Delay between network/5xx retries of Monite polls grows from 1 s up to this cap.
UPSTREAM_ERROR_CAP_S: Final = 60.0
# A Retry-After beyond this is treated as this: a bogus header must not park work for days.
MAX_RETRY_AFTER_S: Final = 3600.0


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta seconds or HTTP-date), or None.

    Garbled values are None; values are clamped to ``0 … MAX_RETRY_AFTER_S``.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def jittered(delay_s: float, rng: random.Random | None = None, spread: float = 0.2) -> float:
    """``delay_s`` moved randomly by up to ±``spread`` of itself (never below zero)."""
    if delay_s <= 0:
        return 0.0
    r = (rng or random).uniform(-spread, spread)
    return max(0.0, delay_s * (1.0 + r))


def schedule_step(schedule: Sequence[float], step: int) -> float:
    """The ``step``-th delay of a schedule; past its end, the last value repeats."""
    if not schedule:
        return 0.0
    return schedule[min(step, len(schedule) - 1)]


def next_poll_delay(
    schedule: Sequence[float],
    polls_done: int,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds until the next poll of a task still ``processing`` after ``polls_done`` polls."""
    delay = jittered(schedule_step(schedule, max(0, polls_done - 1)), rng)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def upstream_error_delay(
    consecutive_errors: int, retry_after_s: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the ``consecutive_errors``-th failed call to Monite (5xx, network)."""
    base = min(UPSTREAM_ERROR_CAP_S, 2.0 ** max(0, consecutive_errors - 1))
    delay = jittered(base, rng)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def next_delivery_delay(
    schedule: Sequence[float],
    attempts_done: int,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next delivery attempt, or ``None`` when the schedule is exhausted.

    ``attempts_done`` counts attempts of the current series; the schedule's first entry is the
    delay of the first attempt, so attempt ``n+1`` waits ``schedule[n]``.
    """
    if attempts_done >= len(schedule):
        return None
    delay = jittered(schedule[attempts_done], rng)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay
