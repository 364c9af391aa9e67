"""One request to Monite: take a slot of the shared budget, send, count it, and back every
process off after a 429 or when Monite's rate headers say the quota is spent."""

from __future__ import annotations

import hashlib
import math
from typing import Any, Final, Literal

import httpx
from redis.asyncio import Redis

from service import metrics
from service.monite.budget import Priority, RateBudget, RateBudgetTimeout
from service.monite.results import (
    MoniteFailure,
    MoniteRateLimited,
    MoniteUnavailable,
    describe,
    retry_after,
)
from service.settings import DEV_MONITE_CLIENT_ID, Settings
from service.storage.activity import Activity
from service.storage.keys import Keys

Endpoint = Literal["auth_token", "get_task", "list_tasks", "create_task", "upload_file"]
_DEFAULT_RETRY_AFTER_S: Final = 1.0


def build_monite_http(settings: Settings) -> httpx.AsyncClient:
    """The process-wide HTTP client for Monite: pooled, bounded, no redirects, finite timeouts."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            settings.monite_timeout_s, connect=min(5.0, settings.monite_timeout_s)
        ),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30),
        follow_redirects=False,
        headers={"user-agent": "ocr-relay"},
    )


def credentials_id(settings: Settings) -> str:
    """A short, stable id of the Monite API client in use (never derived from a secret).

    It names the shared token and the shared rate budget, so every process using the same
    credentials against the same Monite shares both.
    """
    client = "static-token" if settings.monite_token else client_id(settings)
    digest = hashlib.sha256(f"{settings.monite_base_url}\n{client}".encode())
    return digest.hexdigest()[:16]


def client_id(settings: Settings) -> str:
    # Without credentials the service talks to the simulator, which accepts the public dev pair.
    return settings.monite_client_id or DEV_MONITE_CLIENT_ID


def rate_budget(settings: Settings, redis: Redis, keys: Keys) -> RateBudget:
    """The budget every process shares for these credentials.

    The burst is a fifth of a second's worth, so a full burst followed by a second at the full
    rate stays within Monite's per-second limit (30/s) at the default rate of 25/s.
    """
    cid = credentials_id(settings)
    rate = settings.monite_rate_limit
    burst = max(1, math.floor(rate / 5))
    tally = Activity(redis, keys).tally_key
    return RateBudget(redis, keys.rate_budget(cid), keys.rate_pause(cid), rate, burst, tally=tally)


class MoniteTransport:
    """Sends requests to Monite within the shared budget; one per process and credentials."""

    def __init__(
        self, settings: Settings, redis: Redis, http: httpx.AsyncClient, keys: Keys
    ) -> None:
        self._http = http
        self._base = settings.monite_base_url
        self.budget = rate_budget(settings, redis, keys)
        self.activity = Activity(redis, keys)

    async def take_slot(
        self, priority: Priority, max_wait_s: float | None
    ) -> float | MoniteRateLimited:
        """Take one request's slot of the shared budget; the seconds waited, or the refusal."""
        try:
            waited = await self.budget.acquire(priority, max_wait_s)
        except RateBudgetTimeout as exc:
            return MoniteRateLimited(exc.retry_after_s, source="budget")
        metrics.MONITE_LIMITER_WAIT.labels(priority).observe(waited)
        return waited

    async def send(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        headers: dict[str, str],
        priority: Priority,
        max_wait_s: float | None,
        slot_taken: bool = False,
        **request: Any,
    ) -> httpx.Response | MoniteFailure:
        """Take a budget slot (unless taken), send, record metrics, feed rate headers back."""
        if not slot_taken:
            waited = await self.take_slot(priority, max_wait_s)
            if isinstance(waited, MoniteRateLimited):
                return waited
        try:
            response = await self._http.request(
                method, f"{self._base}{path}", headers=headers, **request
            )
        except httpx.TimeoutException as exc:
            metrics.MONITE_REQUESTS.labels(endpoint, "timeout").inc()
            return MoniteUnavailable(None, f"timed out talking to Monite ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            metrics.MONITE_REQUESTS.labels(endpoint, "network").inc()
            return MoniteUnavailable(None, f"network error talking to Monite: {describe(exc)}")
        metrics.MONITE_REQUESTS.labels(endpoint, str(response.status_code)).inc()
        await self.budget.observe_headers(response.headers)
        if response.status_code == 429:
            metrics.MONITE_RATE_LIMITED.inc()
            await self.activity.count("monite:429")
            wait_s = retry_after(response) or _DEFAULT_RETRY_AFTER_S
            # Every process backs off, not just this one: they share Monite's per-client quota.
            await self.budget.pause_for(wait_s)
            return MoniteRateLimited(wait_s)
        return response
