"""Identifiers: a type prefix plus a ULID (time-ordered, 128 bits, Crockford base32)."""

from __future__ import annotations

import os
import time
from typing import Final

_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str) -> str:
    """``prefix_`` + 26 characters: 48 bits of milliseconds then 80 random bits."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def is_id(value: str, prefix: str) -> bool:
    """True when ``value`` has the shape of an id made by ``new_id(prefix)``."""
    head, sep, body = value.partition("_")
    return bool(sep) and head == prefix and len(body) == 26 and all(c in _ALPHABET for c in body)
