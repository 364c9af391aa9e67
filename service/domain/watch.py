"""Watch states, the transitions between them, and the reasons a watch fails.

Pure: the store checks every write of a watch against ``can_transition`` (a write along an edge
the rules do not have is refused as a bug), and makes the allowed ones atomically in Redis.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Final, Literal

import msgspec

from service.domain.schema import FailureCode as OcrFailureCode


class WatchState(enum.StrEnum):
    """Where a watch is in its life: polling → delivering → delivered or failed; or cancelled."""

    POLLING = "polling"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


DeliveryFailureCode = Literal["callback_gone", "delivery_exhausted", "callback_refused"]
# Why a watch failed: the OCR outcome its ``ocr.failed`` event reported (the event's own vocabulary,
# ``service.domain.schema``), or why its event could not be delivered.
FailureCode = OcrFailureCode | DeliveryFailureCode


class Failure(msgspec.Struct, frozen=True):
    """Why a watch ended ``failed``: the OCR outcome or the delivery problem."""

    code: FailureCode
    message: str


TERMINAL_STATES: Final = frozenset({WatchState.DELIVERED, WatchState.FAILED, WatchState.CANCELLED})

# A failure event is delivered too, so `failed` is reachable from `delivering` only; `polling`
# goes to `delivering` for both outcomes. Redelivery reopens a finished delivery.
_ALLOWED: Final[dict[WatchState, frozenset[WatchState]]] = {
    WatchState.POLLING: frozenset({WatchState.DELIVERING, WatchState.CANCELLED}),
    WatchState.DELIVERING: frozenset(
        {WatchState.DELIVERED, WatchState.FAILED, WatchState.CANCELLED}
    ),
    WatchState.DELIVERED: frozenset({WatchState.DELIVERING}),
    WatchState.FAILED: frozenset({WatchState.DELIVERING}),
    WatchState.CANCELLED: frozenset(),
}


def can_transition(current: WatchState, target: WatchState) -> bool:
    """True when a watch in ``current`` may move to ``target`` (or stays in it); every write of
    a watch is checked here by the store."""
    return target == current or target in _ALLOWED[current]


def can_redeliver(state: WatchState, has_event: bool) -> bool:
    """A finished delivery (either way) with a stored event may be delivered again."""
    return has_event and state in (WatchState.DELIVERED, WatchState.FAILED)


class SigningSecret(msgspec.Struct, frozen=True):
    """A webhook secret of a watch; an old secret keeps signing until ``expires_at`` (rotation)."""

    value: str
    expires_at: datetime | None = None


class Watch(msgspec.Struct, kw_only=True):
    """A registration: "tell ``callback_url`` when Monite task ``task_id`` finishes".

    Stored msgpack-encoded; ``version`` increases with every write so that concurrent writers
    are detected (compare-and-set in the store).
    """

    id: str
    client: str
    task_id: str
    entity_id: str | None
    callback_url: str
    metadata_json: bytes
    secrets: tuple[SigningSecret, ...]
    include_raw: bool = False
    state: WatchState = WatchState.POLLING
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime
    polls: int = 0
    poll_errors: int = 0
    last_monite_status: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    failure: Failure | None = None
    # The OCR outcome's failure, kept when a delivery problem replaces ``failure`` so that a
    # redelivery can restore it.
    ocr_failure: Failure | None = None
    delivery_series: int = 0
    delivery_attempts: int = 0
    delivery_in_flight_until: datetime | None = None
    # When the next delivery attempt of a `delivering` watch is due: the score of its entry in the
    # delivery index (see ``delivery_step_at``), kept in the record so the two cannot disagree.
    next_attempt_at: datetime | None = None
    # A digest of the request that made the watch under an Idempotency-Key: a replay of the key
    # with another request is refused instead of answered with this watch.
    request_digest: str | None = None
    # When Monite finished the task (its ``updated_at``, else when we saw it finished): the start
    # of the lag to the callback's acknowledgement that the console reports.
    ocr_finished_at: datetime | None = None
    version: int = 0

    def active_secrets(self, now: datetime) -> tuple[str, ...]:
        """The secrets that sign at ``now``: the current one and any still in its grace period."""
        return tuple(s.value for s in self.secrets if s.expires_at is None or s.expires_at > now)


def delivery_step_at(watch: Watch) -> datetime | None:
    """When a ``delivering`` watch's next step is due, None for a watch in any other state.

    An attempt in flight holds the watch until its lease ends: past that, the attempt's worker is
    presumed dead and the step is overdue. Otherwise the next attempt's time; a record written
    before ``next_attempt_at`` existed is due at once.
    """
    if watch.state != WatchState.DELIVERING:
        return None
    return watch.delivery_in_flight_until or watch.next_attempt_at or watch.updated_at


class Transition(msgspec.Struct, frozen=True):
    """One recorded state change of a watch."""

    at: datetime
    to: WatchState
    source: WatchState | None = msgspec.field(default=None, name="from")
    reason: str | None = None
    # Who asked for it when a person did: ``operator:<name>`` (the console) or ``client:<name>``.
    by: str | None = None
