"""Access tokens issued by ``POST /v1/auth/token``: partner tokens and entity-user tokens."""

from __future__ import annotations

import secrets
import time
import uuid

import msgspec

# Entity-user tokens need an entity; the simulator derives one per user, stable across runs.
_ENTITY_NAMESPACE = uuid.UUID("8f3b2a51-6c1e-4f0a-9d7b-3e2c1a0b9f84")


class Grant(msgspec.Struct, frozen=True):
    """What a token stands for. ``entity`` is set for entity-user tokens only."""

    client_id: str
    expires_at: float
    entity: str | None = None


class TokenRegistry:
    """Issued tokens in memory; expired ones stay known so requests still count for their client."""

    def __init__(self) -> None:
        self._grants: dict[str, Grant] = {}

    def issue(self, client_id: str, ttl_s: int, entity_user_id: str | None = None) -> str:
        """A new token for the client; an entity-user token is bound to the user's entity."""
        token = secrets.token_urlsafe(30)
        entity = None if entity_user_id is None else entity_of_user(entity_user_id)
        self._grants[token] = Grant(client_id, time.time() + ttl_s, entity)
        return token

    def lookup(self, token: str) -> Grant | None:
        """The grant behind a token, expired or not; ``None`` for unknown or revoked tokens."""
        return self._grants.get(token)

    def revoke(self, token: str) -> bool:
        """Forget one token; tells whether it existed."""
        return self._grants.pop(token, None) is not None

    def revoke_all(self) -> int:
        """Forget every token; returns how many there were."""
        count = len(self._grants)
        self._grants.clear()
        return count


def entity_of_user(entity_user_id: str) -> str:
    """The entity an entity user belongs to in the simulator's world."""
    return str(uuid.uuid5(_ENTITY_NAMESPACE, entity_user_id))
