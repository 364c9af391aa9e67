"""The dev inbox: a callback receiver that ``ocr-relay dev`` runs on a port of its own.

It lets a newcomer see a signed event arrive before writing a receiver: ``POST /_dev/inbox``
verifies the Standard Webhooks signature with the dev inbox secret and records the delivery;
``GET /_dev/inbox`` lists what arrived, oldest first. It is never part of the API process, so a
production deployment cannot serve it. Arrivals live in memory and end with the process.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec
from litestar import Litestar, Request, Response, get, post

from service import logs
from service.domain.signing import SignatureError, verify_signature

INBOX_PATH: Final = "/_dev/inbox"
# Enough for a dev session; older arrivals make room for new ones.
_KEPT: Final = 200

log = logging.getLogger("ocr_relay.dev_inbox")


class Arrival(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery as the inbox saw it: whether its signature verified, and the event."""

    received_at: datetime
    webhook_id: str | None
    verified: bool
    problem: str | None
    """Why the signature did not verify (null when it did)."""
    event: Any
    """The body as JSON (null when it is not JSON)."""


def create_inbox_app(secret: str) -> Litestar:
    """The inbox application, verifying deliveries with ``secret`` (``whsec_…``)."""
    arrivals: deque[Arrival] = deque(maxlen=_KEPT)

    @post(INBOX_PATH, status_code=200)
    async def receive(request: Request[Any, Any, Any]) -> Response[str]:
        """Verify and record one delivery; 400 (recorded too) when the signature is wrong."""
        body = await request.body()
        headers = dict(request.headers)
        try:
            verify_signature(secret, headers, body)
            problem = None
        except SignatureError as exc:
            problem = str(exc)
        try:
            event: Any = msgspec.json.decode(body)
        except msgspec.DecodeError:
            event = None
        arrival = Arrival(
            received_at=datetime.now(UTC),
            webhook_id=headers.get("webhook-id"),
            verified=problem is None,
            problem=problem,
            event=event,
        )
        arrivals.append(arrival)
        kind = event.get("type") if isinstance(event, dict) else None
        verdict = "signature verified" if problem is None else f"REFUSED: {problem}"
        log.info(f"received {arrival.webhook_id} {kind} ({verdict})")
        if problem is not None:
            return Response(f"signature: {problem}\n", status_code=400, media_type="text/plain")
        return Response("signature verified\n", media_type="text/plain")

    @get(INBOX_PATH)
    async def arrived() -> list[Arrival]:
        """Every recorded delivery, oldest first."""
        return list(arrivals)

    return Litestar(route_handlers=[receive, arrived], logging_config=None, openapi_config=None)


def serve(*, host: str, port: int, secret_file: Path) -> None:
    """Run the inbox under uvicorn until interrupted, with the secret kept in ``secret_file``."""
    import uvicorn

    logs.configure("INFO")
    secret = secret_file.read_text(encoding="ascii").strip()
    uvicorn.run(create_inbox_app(secret), host=host, port=port, log_config=None, access_log=False)
