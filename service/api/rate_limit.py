"""The API's per-client rate limit (``API_RATE_LIMIT_PER_MINUTE``) as Litestar middleware.

Clients are told where they stand on every response (``RateLimit-Limit``, ``-Remaining``,
``-Reset``, ``-Policy``); a refused request gets a 429 problem with ``Retry-After``. Health,
metrics, the schema and Monite's push intake (signed by Monite, sent from one address in bursts as
large as the OCR load) are not limited.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import TooManyRequestsException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import client_for
from service.ratelimit import ClientDecision, ClientRateLimit
from service.settings import ApiClient

_EXEMPT: Final = re.compile(r"^/(health|metrics|schema|v1/monite/webhooks)(/|$)")


def is_exempt(scope: Scope) -> bool:
    """Whether a request is not counted: health, metrics, the schema, Monite's pushes."""
    return bool(_EXEMPT.match(scope["path"]))


def client_identifier(scope: Scope, clients: Sequence[ApiClient]) -> str:
    """Per authenticated client, else per address.

    Keyed on who the key authenticates, not on the header's text: ``bearer KEY`` or
    ``Bearer  KEY`` is the same client and spends the same allowance. A request without a valid
    key (answered 401) counts against its address, so guessing keys is limited too.
    """
    client = client_for(clients, MutableScopeHeaders(scope).get("authorization", ""))
    if client is not None:
        return "client:" + client
    peer = scope.get("client")
    return "addr:" + (peer[0] if peer else "unknown")


def _headers(decision: ClientDecision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_s),
        "RateLimit-Policy": f"{decision.limit}; w=60",
    }


class RateLimitMiddleware(ASGIMiddleware):
    """Counts each request against its client's allowance in Redis (one round trip)."""

    scopes = (ScopeType.HTTP,)

    def __init__(self) -> None:
        self.should_bypass_for_scope = is_exempt

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Refuse a request over its client's allowance; tell every answer what is left."""
        state = scope["litestar_app"].state
        limit: ClientRateLimit = state.client_rate_limit
        decision = await limit.hit(client_identifier(scope, state.services.settings.api_keys))
        headers = _headers(decision)
        if not decision.allowed:
            raise TooManyRequestsException(
                detail=f"more than {decision.limit} requests a minute; "
                f"retry in {decision.retry_after_s} s",
                headers={**headers, "Retry-After": str(decision.retry_after_s)},
            )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableScopeHeaders.from_message(message)
                for name, value in headers.items():
                    response_headers[name] = value
            await send(message)

        await next_app(scope, receive, send_with_headers)
