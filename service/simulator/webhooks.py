"""Monite-style ``ocr_task.finished`` webhooks, signed with ``Monite-Signature: t=…,v1=…``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable

import aiohttp
import msgspec

from service.simulator.tasks import format_time

log = logging.getLogger(__name__)

SUBSCRIPTION_ID = "5d6c0b1e-2f4a-4e8b-9c3d-7a1f0e2b4c6d"
"""The ``webhook_subscription_id`` of every event (the simulator has one subscription)."""
ATTEMPTS = 3

EventFactory = Callable[[], bytes | None]
"""Builds an event body when it is due, or ``None`` if the task no longer warrants one."""


class EventObject(msgspec.Struct, kw_only=True):
    """The ``object`` of an ``ocr_task`` event."""

    id: str
    status: str


class WebhookEvent(msgspec.Struct, kw_only=True):
    """``EventResourceForWebhookClient``."""

    id: str
    created_at: str
    action: str
    api_version: str
    description: str
    entity_id: str
    object: EventObject
    object_type: str
    webhook_subscription_id: str


class WebhookCounters(msgspec.Struct, kw_only=True):
    """Webhook deliveries since the last reset."""

    delivered: int = 0
    failed: int = 0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Monite-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def finished_event(task_id: str, entity_id: str, status: str, api_version: str) -> bytes:
    """The JSON body of an ``ocr_task.finished`` event."""
    event = WebhookEvent(
        id=str(uuid.uuid4()),
        created_at=format_time(time.time()),
        action="ocr_task.finished",
        api_version=api_version,
        description="ocr_task.finished",
        entity_id=entity_id,
        object=EventObject(id=task_id, status=status),
        object_type="ocr_task",
        webhook_subscription_id=SUBSCRIPTION_ID,
    )
    return msgspec.json.encode(event)


class WebhookSender:
    """Sends events in the background; a failed POST is retried twice, 0.5 s then 1 s later."""

    def __init__(self) -> None:
        self.counters = WebhookCounters()
        self._client: aiohttp.ClientSession | None = None
        self._pending: set[asyncio.Handle | asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open the HTTP client (at application start-up)."""
        # aiohttp rather than httpx: benchmarks push a thousand events a second from the same
        # machine as the service, and httpx costs several times the CPU per request.
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0))

    async def stop(self) -> None:
        """Cancel pending sends and close the client (at shutdown)."""
        self.cancel()
        if self._client is not None:
            await self._client.close()
            self._client = None

    def cancel(self) -> None:
        """Drop every scheduled or running send (reset)."""
        for pending in list(self._pending):
            pending.cancel()
        self._pending.clear()

    def schedule(self, delay_s: float, url: str, secret: str, make_body: EventFactory) -> None:
        """Send the event ``make_body()`` builds, ``delay_s`` from now."""

        def fire() -> None:
            self._pending.discard(handle)
            task = asyncio.get_running_loop().create_task(self._send(url, secret, make_body()))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        handle = asyncio.get_running_loop().call_later(max(0.0, delay_s), fire)
        self._pending.add(handle)

    async def _send(self, url: str, secret: str, body: bytes | None) -> None:
        if body is None or self._client is None:
            return
        for attempt in range(ATTEMPTS):
            headers = {
                "Content-Type": "application/json",
                "Monite-Signature": sign(secret, int(time.time()), body),
            }
            try:
                async with self._client.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    if 200 <= response.status < 300:
                        self.counters.delivered += 1
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.info("webhook POST failed: %s", type(exc).__name__)
            if attempt + 1 < ATTEMPTS:
                await asyncio.sleep(0.5 * 2**attempt)
        self.counters.failed += 1
