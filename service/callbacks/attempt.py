"""One signed delivery attempt of an event to its callback, and what came of it.

``attempt_delivery`` never raises for network trouble: every way an attempt can end is an outcome
the delivery job stores and acts on. Deciding when to try again is the job's business (with
``service.domain.backoff``); this module only classifies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Final

import aiohttp
import httpx

from service.callbacks.egress import CallbackClient, CallbackRefused
from service.domain.backoff import parse_retry_after
from service.domain.delivery import AttemptResult, Outcome
from service.domain.signing import signature_header

EXCERPT_BYTES: Final = 1024
USER_AGENT: Final = f"ocr-relay/{metadata.version('ocr-relay')}"


def classify_status(status_code: int) -> Outcome:
    """The outcome of an HTTP answer from a callback."""
    if 200 <= status_code < 300:
        return "delivered"
    if status_code == 410:
        return "gone"
    if status_code == 429 or status_code >= 500:
        return "retry"
    return "rejected"


def _failure_reason(exc: Exception, timeout_s: float) -> str:
    # httpx-aiohttp maps aiohttp's errors coarsely (a dropped connection becomes ConnectTimeout);
    # the aiohttp cause, when there is one, says what really happened.
    root = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    if isinstance(root, TimeoutError) or (root is exc and isinstance(exc, httpx.TimeoutException)):
        return f"timeout after {timeout_s:g} s"
    return f"network error ({type(root).__name__}): {str(root) or 'no detail'}"


async def attempt_delivery(
    client: CallbackClient,
    *,
    url: str,
    event_id: str,
    body: bytes,
    secrets: Sequence[str],
    timeout_s: float,
) -> AttemptResult:
    """POST ``body`` exactly, signed with every secret in ``secrets``, once; report the outcome.

    Network trouble, timeouts and policy refusals become outcomes; only a missing or malformed
    secret raises (``ValueError``), since that is a bug rather than a property of the callback.
    """
    at = datetime.now(UTC)
    started = time.perf_counter()

    def finish(
        outcome: Outcome,
        *,
        status_code: int | None = None,
        error: str | None = None,
        excerpt: str | None = None,
        retry_after_s: float | None = None,
    ) -> AttemptResult:
        return AttemptResult(
            at=at,
            status_code=status_code,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            error=error,
            response_excerpt=excerpt,
            outcome=outcome,
            retry_after_s=retry_after_s,
        )

    timestamp = int(at.timestamp())
    headers = {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, event_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        # The excerpt is read raw: a compressed answer would be unreadable (or a zip bomb).
        "accept-encoding": "identity",
    }
    response: httpx.Response | None = None
    excerpt = bytearray()
    try:
        target = client.policy.check_target(url)
        # The per-phase timeouts do not bound a receiver that trickles its answer; this does.
        async with (
            asyncio.timeout(timeout_s),
            client.http.stream(
                "POST", target.url, content=body, headers=headers, timeout=timeout_s
            ) as response,
        ):
            async for chunk in response.aiter_raw():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES:
                    break
    except CallbackRefused as exc:
        return finish("refused", error=f"callback refused: {exc.reason}")
    except (httpx.HTTPError, aiohttp.ClientError, OSError) as exc:
        # Once the status line has arrived the receiver has answered; a body that stalls or
        # breaks afterwards only shortens the excerpt.
        if response is None:
            return finish("retry", error=_failure_reason(exc, timeout_s))
    status = response.status_code
    outcome = classify_status(status)
    retry_after = (
        parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))
        if outcome == "retry"
        else None
    )
    error = None
    if outcome != "delivered":
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed)"
    return finish(
        outcome,
        status_code=status,
        error=error,
        excerpt=bytes(excerpt[:EXCERPT_BYTES]).decode("utf-8", errors="replace") or None,
        retry_after_s=retry_after,
    )
