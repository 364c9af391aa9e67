"""API keys: how they are made, stored (as SHA-256 digests) and checked (in constant time)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from service.settings import ApiClient

_KEY_PREFIX = "ocr_"


def new_api_key(client: str) -> tuple[str, str]:
    """A fresh random API key and its ``API_KEYS`` entry ``client:sha256:<hex>``."""
    key = _KEY_PREFIX + secrets.token_urlsafe(32)
    return key, f"{client}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def bearer_token(authorization: str) -> str | None:
    """The API key of an ``Authorization: Bearer <key>`` value (scheme in any case), or None."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def client_for(clients: Sequence[ApiClient], authorization: str) -> str | None:
    """The client an ``Authorization`` header authenticates, or None.

    The one reading of the header: the guard and the rate limiter both use it, so no spelling
    of the same key (``bearer``, extra spaces) can count as another client.
    """
    token = bearer_token(authorization)
    return None if token is None else authenticate(clients, token)


def authenticate(clients: Sequence[ApiClient], presented: str) -> str | None:
    """The name of the client whose key was presented, or None.

    Every configured digest is compared, whatever matches, so the time taken does not tell
    which client (or how many) came close.
    """
    digest = hashlib.sha256(presented.encode()).digest()
    found: str | None = None
    for client in clients:
        if hmac.compare_digest(digest, client.key_sha256):
            found = client.name
    return found
