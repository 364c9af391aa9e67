"""The watch state machine and the retry schedules (pure rules)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from service.domain import backoff
from service.domain.watch import WatchState, can_redeliver, can_transition

S = WatchState


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.POLLING, S.DELIVERING),
        (S.POLLING, S.CANCELLED),
        (S.DELIVERING, S.DELIVERED),
        (S.DELIVERING, S.FAILED),
        (S.DELIVERING, S.CANCELLED),
        (S.DELIVERED, S.DELIVERING),
        (S.FAILED, S.DELIVERING),
    ],
)
def test_allowed_transitions(current: WatchState, target: WatchState) -> None:
    assert can_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.POLLING, S.DELIVERED),
        (S.POLLING, S.FAILED),
        (S.CANCELLED, S.POLLING),
        (S.CANCELLED, S.DELIVERING),
        (S.DELIVERED, S.POLLING),
        (S.DELIVERED, S.CANCELLED),
    ],
)
def test_forbidden_transitions(current: WatchState, target: WatchState) -> None:
    assert not can_transition(current, target)


def test_only_a_finished_delivery_with_an_event_can_be_repeated() -> None:
    assert can_redeliver(S.DELIVERED, has_event=True)
    assert can_redeliver(S.FAILED, has_event=True)
    assert not can_redeliver(S.FAILED, has_event=False)
    assert not can_redeliver(S.POLLING, has_event=True)
    assert not can_redeliver(S.CANCELLED, has_event=True)


def test_poll_delays_follow_the_schedule_within_jitter() -> None:
    schedule = (1.0, 2.0, 3.0, 5.0)
    rng = random.Random(7)
    delays = [backoff.next_poll_delay(schedule, n, rng=rng) for n in range(1, 7)]
    for delay, expected in zip(delays, (1.0, 2.0, 3.0, 5.0, 5.0, 5.0), strict=True):
        assert expected * 0.8 <= delay <= expected * 1.2


def test_poll_delay_is_never_shorter_than_retry_after() -> None:
    assert backoff.next_poll_delay((1.0,), 1, retry_after_s=9.0) >= 9.0


def test_jitter_spreads_delays_of_many_watches() -> None:
    rng = random.Random(1)
    delays = {round(backoff.jittered(10.0, rng), 3) for _ in range(50)}
    assert len(delays) > 40
    assert all(8.0 <= d <= 12.0 for d in delays)


def test_upstream_errors_back_off_exponentially_up_to_a_cap() -> None:
    rng = random.Random(3)
    first = backoff.upstream_error_delay(1, rng=rng)
    fifth = backoff.upstream_error_delay(5, rng=rng)
    huge = backoff.upstream_error_delay(50, rng=rng)
    assert 0.8 <= first <= 1.2
    assert 12.8 <= fifth <= 19.2
    assert huge <= backoff.UPSTREAM_ERROR_CAP_S * 1.2


def test_delivery_schedule_runs_out() -> None:
    schedule = (0.0, 5.0, 30.0)
    assert backoff.next_delivery_delay(schedule, 0) == 0.0
    assert 4.0 <= (backoff.next_delivery_delay(schedule, 1) or 0) <= 6.0
    assert backoff.next_delivery_delay(schedule, 3) is None


def test_delivery_delay_honours_retry_after() -> None:
    assert (backoff.next_delivery_delay((0.0, 1.0), 1, retry_after_s=120.0) or 0) >= 120.0


def test_retry_after_reads_seconds_and_http_dates_and_clamps() -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    assert backoff.parse_retry_after("7", now) == 7.0
    assert backoff.parse_retry_after("Wed, 25 Nov 2026 12:00:30 GMT", now) == 30.0
    assert backoff.parse_retry_after("soon", now) is None
    assert backoff.parse_retry_after("-3", now) == 0.0
    assert backoff.parse_retry_after("99999999", now) == backoff.MAX_RETRY_AFTER_S
