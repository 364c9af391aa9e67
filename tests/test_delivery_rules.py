"""``decide_delivery``: what follows a delivery attempt, as a table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.domain.delivery import AttemptResult, DeliveryDecision, Outcome, decide_delivery
from service.domain.watch import Failure, WatchState

SCHEDULE = (0.0, 5.0, 30.0)
OCR_ERROR = Failure(code="ocr_error", message="Monite reported status 'error'")


def attempt(
    outcome: Outcome, status: int | None = 200, retry_after_s: float | None = None
) -> AttemptResult:
    return AttemptResult(
        at=datetime(2026, 11, 29, tzinfo=UTC),
        status_code=status,
        latency_ms=1.0,
        outcome=outcome,
        error=None if outcome == "delivered" else "HTTP error",
        retry_after_s=retry_after_s,
    )


@pytest.mark.parametrize(
    ("result", "number", "ocr_failure", "state", "code", "retry_in_s"),
    [
        (attempt("delivered"), 1, None, WatchState.DELIVERED, None, None),
        (attempt("delivered"), 1, OCR_ERROR, WatchState.FAILED, "ocr_error", None),
        (attempt("gone", 410), 1, None, WatchState.FAILED, "callback_gone", None),
        (attempt("refused", None), 1, None, WatchState.FAILED, "callback_refused", None),
        (attempt("rejected", 400), 1, None, None, None, 5.0),
        (attempt("rejected", 400), 3, None, WatchState.FAILED, "delivery_exhausted", None),
        (attempt("retry", 503), 1, None, None, None, 5.0),
        (attempt("retry", 429, retry_after_s=60.0), 1, None, None, None, 60.0),
        (attempt("retry", 503), 3, None, WatchState.FAILED, "delivery_exhausted", None),
    ],
)
def test_what_follows_an_attempt(
    result: AttemptResult,
    number: int,
    ocr_failure: Failure | None,
    state: WatchState | None,
    code: str | None,
    retry_in_s: float | None,
) -> None:
    decision = decide_delivery(result, number=number, ocr_failure=ocr_failure, schedule=SCHEDULE)
    assert decision.final_state == state
    assert (decision.failure.code if decision.failure else None) == code
    if retry_in_s is None:
        assert decision.retry_in_s is None
    else:
        assert decision.retry_in_s is not None
        assert retry_in_s * 0.8 <= decision.retry_in_s <= retry_in_s * 1.2


def test_an_exhausted_series_names_its_last_answer() -> None:
    decision = decide_delivery(attempt("retry", 503), number=3, ocr_failure=None, schedule=SCHEDULE)
    assert decision == DeliveryDecision(
        final_state=WatchState.FAILED,
        failure=Failure(
            code="delivery_exhausted",
            message="gave up after 3 attempts; the last one ended with HTTP 503",
        ),
    )
