"""The API's per-client rate limit (``API_RATE_LIMIT_PER_MINUTE``) as Litestar middleware.

Clients are told where they stand on every response (``RateLimit-Limit``, ``-Remaining``,
``-Reset``, ``-Policy``); a refused request gets a 429 problem with ``Retry-After``. Health,
metrics, the schema and Monite's push intake (signed by Monite, sent from one address in bursts as
large as the OCR load) are not limited. The allowance is a GCRA in Redis (``ClientRateLimit``):
one round trip and constant work per request, atomic across API processes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Final

import msgspec
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import TooManyRequestsException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from redis.asyncio import Redis

from service.auth import client_for
from service.settings import ApiClient

_EXEMPT: Final = re.compile(r"^/(health|metrics|schema|v1/monite/webhooks|console/static)(/|$)")


def is_exempt(scope: Scope) -> bool:
    """Whether a request is not counted: health, metrics, the schema, Monite's pushes, the
    console's stylesheet."""
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


# A client's allowance (KEYS[1]: its TAT in ms): ARGV[1] ms between requests on average, ARGV[2]
# requests at once at most. Returns allowed (1/0), requests left, ms until the allowance is whole
# again, ms until the next request is allowed.
_CLIENT_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tau = interval * tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local new_tat = tat + interval
if new_tat - now > tau then
  return {0, 0, string.format('%.3f', tat - now), string.format('%.3f', new_tat - tau - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
local left = math.floor((tau - (new_tat - now)) / interval)
return {1, left, string.format('%.3f', new_tat - now), '0'}
"""


class ClientDecision(msgspec.Struct, frozen=True):
    """Whether one request of a client may pass, and what its allowance looks like now."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    """Seconds until the allowance is whole again."""
    retry_after_s: int
    """Seconds until the next request may pass (0 when this one did)."""


class ClientRateLimit:
    """``per_minute`` requests a minute per client, in bursts of up to as many: a GCRA in Redis.

    One round trip and constant work per request whatever the limit, atomic across API processes.
    """

    def __init__(self, redis: Redis, key_prefix: str, per_minute: int) -> None:
        self._redis_script = redis.register_script(_CLIENT_LUA)
        self._prefix = key_prefix
        self._limit = per_minute
        self._interval_ms = 60_000 / per_minute

    async def hit(self, client: str) -> ClientDecision:
        """Count one request of ``client`` if its allowance has room."""
        allowed, left, reset_ms, retry_ms = await self._redis_script(
            keys=[self._prefix + client], args=[self._interval_ms, self._limit]
        )
        return ClientDecision(
            allowed=bool(int(allowed)),
            limit=self._limit,
            remaining=int(left),
            reset_s=math.ceil(float(reset_ms) / 1000),
            retry_after_s=math.ceil(float(retry_ms) / 1000),
        )
