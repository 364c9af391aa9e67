"""Console sign-ins in Redis: what an operator's session cookie stands for.

The cookie holds a random token (256 bits); Redis keeps the session under the token's SHA-256,
so a copy of Redis holds no usable cookie. Server-side sessions, not a cookie that carries its own
claims: signing out ends the session everywhere at once, and no signing key has to be shared by
the API's replicas or rotated.
"""

from __future__ import annotations

import hashlib
import secrets

import msgspec
from redis.asyncio import Redis

from service.storage.keys import Keys

_encode = msgspec.msgpack.Encoder().encode


class ConsoleSession(msgspec.Struct, frozen=True):
    """A signed-in operator and the token its forms must carry (CSRF)."""

    operator: str
    csrf: str


_decoder = msgspec.msgpack.Decoder(ConsoleSession)


class ConsoleSessions:
    """The console sessions of one key prefix."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def start(self, operator: str, lifetime_s: int) -> tuple[str, ConsoleSession]:
        """A new session for ``operator``: its cookie token and the session."""
        token = secrets.token_urlsafe(32)
        session = ConsoleSession(operator=operator, csrf=secrets.token_urlsafe(32))
        await self.redis.set(self._key(token), _encode(session), ex=lifetime_s)
        return token, session

    async def get(self, token: str) -> ConsoleSession | None:
        """The live session of a cookie token, or None (unknown, expired or signed out)."""
        if not token or len(token) > 128:
            return None
        raw = await self.redis.get(self._key(token))
        return None if raw is None else _decoder.decode(raw)

    async def end(self, token: str) -> None:
        """Sign out: the token opens nothing from now on."""
        await self.redis.delete(self._key(token))

    def _key(self, token: str) -> str:
        return self.keys.console_session(hashlib.sha256(token.encode()).hexdigest())
