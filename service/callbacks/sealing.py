"""Webhook secrets at rest: sealed with AES-256-GCM so that a Redis dump alone does not reveal them.

A stored secret says how it was stored, so values written under any configuration stay readable:

- ``v1:<base64url(key id ‖ nonce ‖ ciphertext+tag)>``: sealed with one of the ``SECRETS_KEY`` keys;
  the 4-byte key id (a digest prefix of the key, not the key) picks the key that opens it;
- ``plain:<secret>``: stored while no ``SECRETS_KEY`` was set (a start-up warning says so);
- anything else: a value stored before sealing existed, used as it is.

``SECRETS_KEY=new,old`` rotates keys: the first key seals, every key unseals. Error messages name
the key id at most, never a key or a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.settings import SECRETS_KEY_BYTES, Settings

log = logging.getLogger("ocr_relay.sealing")

SEALED_PREFIX: Final = "v1:"
PLAIN_PREFIX: Final = "plain:"
_KEY_ID_BYTES: Final = 4
_NONCE_BYTES: Final = 12
# Binds a sealed value to its purpose: a ciphertext made for something else does not open here.
_ASSOCIATED_DATA: Final = b"ocr-relay webhook secret v1"


class SealError(ValueError):
    """A stored secret cannot be opened (unknown key, tampered value, no key configured)."""


def generate_key() -> str:
    """A new ``SECRETS_KEY`` value: base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(SECRETS_KEY_BYTES)).decode("ascii")


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"ocr-relay key id\x00" + key).digest()[:_KEY_ID_BYTES]


class Sealer:
    """Seals secrets with the first key and opens them with any key (or stores them plain)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if any(len(k) != SECRETS_KEY_BYTES for k in keys):
            raise ValueError(f"every sealing key must be {SECRETS_KEY_BYTES} bytes")
        self._ciphers = {_key_id(k): AESGCM(k) for k in keys}
        self._sealing_id = _key_id(keys[0]) if keys else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Sealer:
        """The sealer of ``SECRETS_KEY``; without keys it warns that secrets are stored plain."""
        if not settings.secrets_key:
            log.warning(
                "SECRETS_KEY is not set: webhook secrets are stored in Redis unencrypted "
                "(set it to base64 of 32 random bytes, see docs/security.md)"
            )
        return cls(settings.secrets_key)

    @property
    def seals(self) -> bool:
        """True when a key is configured, so new secrets are encrypted."""
        return self._sealing_id is not None

    def seal(self, secret: str) -> str:
        """The value to store for ``secret``."""
        if self._sealing_id is None:
            return PLAIN_PREFIX + secret
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._sealing_id].encrypt(nonce, secret.encode(), _ASSOCIATED_DATA)
        blob = self._sealing_id + nonce + sealed
        return SEALED_PREFIX + base64.urlsafe_b64encode(blob).decode("ascii")

    def unseal(self, stored: str) -> str:
        """The secret behind a stored value; raises ``SealError`` when it cannot be opened."""
        if stored.startswith(PLAIN_PREFIX):
            return stored[len(PLAIN_PREFIX) :]
        if not stored.startswith(SEALED_PREFIX):
            return stored
        try:
            blob = base64.b64decode(stored[len(SEALED_PREFIX) :], altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise SealError("sealed secret is not valid base64") from None
        if len(blob) <= _KEY_ID_BYTES + _NONCE_BYTES:
            raise SealError("sealed secret is truncated")
        key_id, nonce = blob[:_KEY_ID_BYTES], blob[_KEY_ID_BYTES : _KEY_ID_BYTES + _NONCE_BYTES]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SealError(
                f"secret was sealed with key id {key_id.hex()}, which is not in SECRETS_KEY"
                if self._ciphers
                else "secret is sealed but SECRETS_KEY is not set"
            )
        try:
            plain = cipher.decrypt(nonce, blob[_KEY_ID_BYTES + _NONCE_BYTES :], _ASSOCIATED_DATA)
        except InvalidTag:
            raise SealError(
                f"sealed secret does not open with key id {key_id.hex()} (altered or truncated)"
            ) from None
        return plain.decode()

    def unseal_all(self, stored: Iterable[str]) -> tuple[str, ...]:
        """``unseal`` of each stored value, in order."""
        return tuple(self.unseal(s) for s in stored)
