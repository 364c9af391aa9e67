"""Time as the service reads it: aware UTC datetimes, and milliseconds shared across processes."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_ms(at: datetime) -> int:
    """Milliseconds since the epoch."""
    return int(at.timestamp() * 1000)


def wall_ms() -> int:
    """Wall-clock milliseconds (due times are shared across processes, so not monotonic)."""
    return int(time.time() * 1000)


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime of milliseconds since the epoch (``to_ms`` reversed)."""
    return datetime.fromtimestamp(ms / 1000, UTC)
