"""The Monite access token, shared by every process through Redis.

One process fetches it (a ``SET NX`` lock makes the fetch a single flight across processes, an
``asyncio.Lock`` within one), the others wait for it and read it. It is refreshed before it
expires; after a 401 the token that failed is dropped (only if nobody has replaced it yet) and the
caller fetches a fresh one. A token endpoint's hostile ``expires_in`` gives a bounded, logged
lifetime, never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from typing import Final

import httpx
import msgspec
from redis.asyncio import Redis

from service import metrics
from service.monite.results import (
    MoniteFailure,
    MoniteUnauthorized,
    MoniteUnavailable,
    failure,
)
from service.monite.transport import MoniteTransport, client_id, credentials_id
from service.settings import DEV_MONITE_CLIENT_SECRET, Settings
from service.storage.keys import Keys

log = logging.getLogger(__name__)

_TOKEN_WAIT_STEP_S: Final = 0.05
# What we believe of a token endpoint's ``expires_in``: at most a day (Monite's last 30 min), and
# when it gives none we can use, five minutes; a token that dies sooner is answered 401 and
# replaced, so a short guess costs a token request, a long one a failed call.
_MAX_TOKEN_LIFETIME_S: Final = 86_400
_FALLBACK_TOKEN_LIFETIME_S: Final = 300


class _TokenRequest(msgspec.Struct, frozen=True):
    client_id: str
    client_secret: str
    grant_type: str = "client_credentials"


class _TokenResponse(msgspec.Struct, frozen=True):
    access_token: str
    # Kept raw: a missing, huge (1e400) or non-numeric lifetime must not cost the token itself.
    expires_in: msgspec.Raw = msgspec.Raw(b"null")


class _StoredToken(msgspec.Struct, frozen=True, array_like=True):
    """The token as kept in Redis, with the lifetime Monite gave it (ms)."""

    access_token: str
    lifetime_ms: int


_stored_token_decoder: Final = msgspec.msgpack.Decoder(_StoredToken)
_token_decoder: Final = msgspec.json.Decoder(_TokenResponse)

# Deletes KEYS[1] only while it still holds ARGV[1]: releasing a lock we own, or dropping the
# token that just failed without dropping the fresh one another process stored meanwhile.
_DELETE_IF_EQUAL_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Token(msgspec.Struct, frozen=True):
    """A token this process holds: the Redis value it came from and when to look again."""

    raw: bytes
    value: str
    fresh_until: float  # time.monotonic()


class SharedToken:
    """The access token of one set of credentials, shared through Redis; one per process."""

    def __init__(
        self, settings: Settings, redis: Redis, keys: Keys, transport: MoniteTransport
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._transport = transport
        cid = credentials_id(settings)
        self._token_key = keys.monite_token(cid)
        self._lock_key = keys.monite_token_lock(cid)
        self._lock_ttl_ms = int(settings.monite_timeout_s * 3000)
        self._delete_if_equal = redis.register_script(_DELETE_IF_EQUAL_LUA)
        self._token: Token | None = None
        self._token_lock = asyncio.Lock()

    async def current(self, max_wait_s: float | None) -> Token | MoniteFailure:
        """This process's token if still fresh, else the shared one, fetching it if needed."""
        static = self._settings.monite_token
        if static:
            return Token(b"", static, math.inf)
        token = self._token
        if token is not None and time.monotonic() < token.fresh_until:
            return token
        async with self._token_lock:
            token = self._token
            if token is not None and time.monotonic() < token.fresh_until:
                return token
            result = await self._shared_token(max_wait_s)
            if isinstance(result, Token):
                self._token = result
            return result

    async def _shared_token(self, max_wait_s: float | None) -> Token | MoniteFailure:
        deadline = time.monotonic() + self._lock_ttl_ms / 1000
        while True:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self._token_key)
                pipe.pttl(self._token_key)
                raw, ttl_ms = await pipe.execute()
            stored = _decode_stored(raw) if ttl_ms > 0 else None
            if stored is not None and ttl_ms > _refresh_window_ms(stored.lifetime_ms):
                return Token(raw, stored.access_token, _fresh_until(stored, ttl_ms))
            owner = secrets.token_hex(8)
            if await self._redis.set(self._lock_key, owner, nx=True, px=self._lock_ttl_ms):
                try:
                    fetched = await self._fetch_token(max_wait_s)
                finally:
                    await self._delete_if_equal(keys=(self._lock_key,), args=(owner,))
                if isinstance(fetched, Token) or stored is None:
                    return fetched
            if stored is not None:
                # Due for refresh, which another process is doing (or which just failed): the
                # current token works until it expires, so use it and look again soon.
                return Token(raw, stored.access_token, time.monotonic() + _TOKEN_WAIT_STEP_S)
            if time.monotonic() > deadline:
                return MoniteUnavailable(None, "timed out waiting for another process's token")
            await asyncio.sleep(_TOKEN_WAIT_STEP_S)

    async def _fetch_token(self, max_wait_s: float | None) -> Token | MoniteFailure:
        """``POST /auth/token`` (client credentials), stored in Redis for every process."""
        secret = self._settings.monite_client_secret or DEV_MONITE_CLIENT_SECRET
        body = msgspec.json.encode(_TokenRequest(client_id(self._settings), secret))
        headers = {
            "x-monite-version": self._settings.monite_api_version,
            "content-type": "application/json",
        }
        # The token request waits no longer than a lock holder may take.
        wait = self._settings.monite_timeout_s if max_wait_s is None else max_wait_s
        response = await self._transport.send(
            "auth_token", "POST", "/auth/token", headers, "high", wait, content=body
        )
        if not isinstance(response, httpx.Response):
            metrics.MONITE_TOKEN_FETCHES.labels("unavailable").inc()
            return response
        if response.status_code in (400, 401, 403, 422):
            metrics.MONITE_TOKEN_FETCHES.labels("rejected").inc()
            log.error(
                "Monite rejected the client credentials",
                extra={"status": response.status_code, "client_id": client_id(self._settings)},
            )
            return MoniteUnauthorized(
                f"Monite rejected the client credentials (HTTP {response.status_code})"
            )
        if not response.is_success:
            metrics.MONITE_TOKEN_FETCHES.labels("unavailable").inc()
            return failure(response)
        try:
            answer = _token_decoder.decode(response.content)
        except msgspec.DecodeError:
            metrics.MONITE_TOKEN_FETCHES.labels("unavailable").inc()
            # Not _malformed(): its message would quote the body, which holds the token.
            return MoniteUnavailable(response.status_code, "malformed token response from Monite")
        metrics.MONITE_TOKEN_FETCHES.labels("ok").inc()
        lifetime_s = _token_lifetime_s(answer.expires_in)
        log.info("fetched a Monite access token", extra={"expires_in_s": lifetime_s})
        stored = _StoredToken(answer.access_token, lifetime_s * 1000)
        raw = msgspec.msgpack.encode(stored)
        # Redis forgets the token a little before Monite does, so nobody sends an expiring one.
        ttl_ms = stored.lifetime_ms - min(30_000, stored.lifetime_ms // 10)
        await self._redis.set(self._token_key, raw, px=ttl_ms)
        return Token(raw, stored.access_token, _fresh_until(stored, ttl_ms))

    async def drop(self, token: Token) -> None:
        """Forget a token Monite refused, unless another process already replaced it."""
        if self._token is not None and self._token.raw == token.raw:
            self._token = None
        await self._delete_if_equal(keys=(self._token_key,), args=(token.raw,))


def _token_lifetime_s(expires_in: msgspec.Raw) -> int:
    """Seconds to keep a token: ``expires_in`` within 1 s … a day, or a logged fallback.

    A number or a numeric string counts; ``null``, ``true``, text, zero and less do not.
    """
    try:
        seconds = float(bytes(expires_in).strip().strip(b'"'))
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds) and 0 < seconds <= _MAX_TOKEN_LIFETIME_S:
        return max(1, int(seconds))
    lifetime_s = _MAX_TOKEN_LIFETIME_S if seconds > 0 else _FALLBACK_TOKEN_LIFETIME_S
    log.warning(
        "Monite's token answer has no usable expires_in; keeping the token a bounded time",
        extra={
            "expires_in": bytes(expires_in)[:40].decode(errors="replace"),
            "lifetime_s": lifetime_s,
        },
    )
    return lifetime_s


def _refresh_window_ms(lifetime_ms: int) -> float:
    """Refresh with a fifth of the lifetime (at least a minute) left, but not in the first half."""
    return min(max(lifetime_ms * 0.2, 60_000), lifetime_ms * 0.5)


def _fresh_until(stored: _StoredToken, ttl_ms: float) -> float:
    return time.monotonic() + (ttl_ms - _refresh_window_ms(stored.lifetime_ms)) / 1000


def _decode_stored(raw: bytes | None) -> _StoredToken | None:
    if raw is None:
        return None
    try:
        return _stored_token_decoder.decode(raw)
    except msgspec.DecodeError:
        return None  # an old or foreign value: fetch a new token over it
