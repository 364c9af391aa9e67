"""Monite's per-client rate limit (a token bucket) and the per-client request counters."""

from __future__ import annotations

import math
import time
from collections import deque

import msgspec

ANONYMOUS = "anonymous"
"""The client of requests that name none (no token, unknown token, unreadable token request)."""


class Decision(msgspec.Struct, frozen=True):
    """The limiter's answer for one request, with the values of the ``RateLimit-*`` headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: int
    """Unix time (seconds) when the bucket is full again."""
    retry_after: int
    """Whole seconds until one request is allowed again; 0 when allowed."""

    def headers(self) -> dict[str, str]:
        """The rate-limit headers every response carries."""
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_at),
            "X-RateLimit-Limit-Second": str(self.limit),
            "X-RateLimit-Remaining-Second": str(self.remaining),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


class TokenBucket:
    """Refills ``rate`` tokens per second up to ``burst``; a request takes one token."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def take(self, now: float, wall: float) -> Decision:
        """Try to take one token at monotonic time ``now`` (``wall`` is for the reset header)."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        allowed = self.tokens >= 1
        if allowed:
            self.tokens -= 1
        missing = 0.0 if allowed else 1 - self.tokens
        return Decision(
            allowed=allowed,
            limit=max(1, math.floor(self.rate)),
            remaining=math.floor(self.tokens),
            reset_at=math.ceil(wall + (self.burst - self.tokens) / self.rate),
            retry_after=0 if allowed else max(1, math.ceil(missing / self.rate)),
        )


class ClientCounters(msgspec.Struct, kw_only=True):
    """What one API client did, as ``GET /_sim/counters`` reports it."""

    requests: int = 0
    """Every request that got an answer (or whose client gave up: status 499)."""
    throttled: int = 0
    """Requests answered 429."""
    peak_per_second: int = 0
    """Most requests admitted by the rate limiter within any sliding 1-second window."""
    by_endpoint: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    """Monite operation id (``get_ocr_tasks_id`` …) → status code → count."""


class ClientState:
    """One client's bucket, counters and the admission times of the last second."""

    __slots__ = ("bucket", "counters", "recent")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.bucket = TokenBucket(rate, burst, now)
        self.counters = ClientCounters()
        self.recent: deque[float] = deque()


class RateLimiter:
    """Buckets and counters of every client seen since the last reset."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.clients: dict[str, ClientState] = {}

    def configure(self, rate: float, burst: float) -> None:
        """Change the limit; existing buckets adopt it at once."""
        self.rate, self.burst = rate, burst
        for state in self.clients.values():
            state.bucket.rate, state.bucket.burst = rate, burst
            state.bucket.tokens = min(state.bucket.tokens, burst)

    def admit(self, client: str) -> Decision:
        """Decide on one request of ``client`` now and track its sliding-window peak."""
        now = time.monotonic()
        state = self.clients.get(client)
        if state is None:
            state = self.clients[client] = ClientState(self.rate, self.burst, now)
        decision = state.bucket.take(now, time.time())
        if decision.allowed:
            recent = state.recent
            recent.append(now)
            while recent[0] <= now - 1.0:
                recent.popleft()
            state.counters.peak_per_second = max(state.counters.peak_per_second, len(recent))
        return decision

    def record(self, client: str, endpoint: str, status: int) -> None:
        """Count one answered request."""
        state = self.clients.get(client)
        if state is None:
            state = self.clients[client] = ClientState(self.rate, self.burst, time.monotonic())
        counters = state.counters
        counters.requests += 1
        if status == 429:
            counters.throttled += 1
        by_status = counters.by_endpoint.setdefault(endpoint, {})
        by_status[str(status)] = by_status.get(str(status), 0) + 1

    def counters(self) -> dict[str, ClientCounters]:
        """Counters per client."""
        return {name: state.counters for name, state in self.clients.items()}

    def clear(self) -> None:
        """Forget every client."""
        self.clients.clear()
