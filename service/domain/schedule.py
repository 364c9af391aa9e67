"""Scores of the time indexes that hold every unfinished watch's next step.

Every watch that is not terminal waits in exactly one sorted set, scored in milliseconds since
the epoch: its group's poll-due set while ``polling`` (the score is the next poll, or the end of
the lease of the round polling it), the delivery index while ``delivering`` (the next attempt, or
the end of the attempt in flight). A step whose score has passed is overdue; the reconciler finds
it there whatever happened to the job that should have taken it.

A first poll (and a task Monite pushed as finished) must go before every overdue re-poll of its
group, so it is scored ``PRIORITY_SHIFT_MS`` earlier than its real due time: still ordered by that
time among themselves, and the real time is recovered for the overdue gauge.
"""

from __future__ import annotations

from typing import Final

UNGROUPED: Final = "-"
"""The poll group of watches without an entity (partner-level tasks)."""


def group_of(entity_id: str | None) -> str:
    """The poll group of a watch of ``entity_id``: one entity's watches share list requests
    (Monite takes one ``x-monite-entity-id`` per request)."""
    return entity_id or UNGROUPED


# ~31.7 years: larger than any overdue a re-poll can have, smaller than today's epoch ms, so a
# shifted score is told apart from a plain one by its size alone.
PRIORITY_SHIFT_MS: Final = 10**12


def priority_score(due_ms: int) -> int:
    """The score of a step due at ``due_ms`` that goes before every plain score of its set."""
    return due_ms - PRIORITY_SHIFT_MS


def due_ms_of(score: float) -> int:
    """The real due time of a score, shifted or not."""
    return int(score) + PRIORITY_SHIFT_MS if score < PRIORITY_SHIFT_MS else int(score)


def overdue_ms(score: float, now_ms: int) -> int:
    """How long the step of ``score`` has been overdue at ``now_ms`` (0 if not yet due)."""
    return max(0, now_ms - due_ms_of(score))
