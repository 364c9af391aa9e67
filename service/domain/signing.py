"""Webhook signatures: Standard Webhooks for our callbacks, Monite's scheme for its pushes.

Standard Webhooks (https://www.standardwebhooks.com): the secret is ``whsec_`` + base64 of the key;
``webhook-signature`` carries one or more space-separated ``v1,<base64 HMAC-SHA256>`` values over
``"{webhook-id}.{webhook-timestamp}.{body}"``. Several values appear while a secret is rotated, so a
receiver holding either the old or the new secret accepts the message.

Error messages never contain a secret, a signature or the body.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets as _random
import time
from collections.abc import Mapping, Sequence
from typing import Final, Literal

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the public prefix, not a secret
SECRET_BYTES: Final = 32
DEFAULT_TOLERANCE_S: Final = 300


class SignatureError(ValueError):
    """A signed message failed verification; the message says why, never what the secret is."""


def generate_secret() -> str:
    """A new webhook secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    # Unpadded base64 is common in the wild, so padding is restored before the strict decode.
    encoded = secret.removeprefix(SECRET_PREFIX).rstrip("=")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not base64 after the whsec_ prefix") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` Standard Webhooks signature of ``body`` for one message id and time."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,`` signature per secret, space-separated."""
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign")
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def _check_timestamp(raw: str, tolerance_s: int, now: float | None) -> int:
    try:
        timestamp = int(raw)
    except ValueError:
        raise SignatureError("timestamp is not a whole number of seconds") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise SignatureError("timestamp is too old")
    if timestamp > current + tolerance_s:
        raise SignatureError("timestamp is in the future")
    return timestamp


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a Standard Webhooks message; raise ``SignatureError`` unless it is authentic and fresh.

    ``body`` is the request body as received: bytes, or text (signed as its UTF-8 bytes, which is
    what web frameworks that hand out ``str`` bodies decoded). ``headers`` may use any letter case.
    ``now`` (unix seconds) defaults to the current time.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    missing = [
        h for h in ("webhook-id", "webhook-timestamp", "webhook-signature") if not lowered.get(h)
    ]
    if missing:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    timestamp = _check_timestamp(lowered["webhook-timestamp"], tolerance_s, now)
    raw = body.encode() if isinstance(body, str) else body
    try:
        expected = sign(secret, lowered["webhook-id"], timestamp, raw).encode()
    except ValueError as exc:
        raise SignatureError(str(exc)) from None
    # Every candidate is compared (no early exit on the first v1) so timing says nothing useful.
    matched = False
    for candidate in lowered["webhook-signature"].split():
        matched |= hmac.compare_digest(candidate.encode(), expected)
    if not matched:
        raise SignatureError("no matching signature")


MoniteKeyForm = Literal["text", "base64"]


def _monite_keys(secret: str) -> dict[MoniteKeyForm, bytes]:
    """The HMAC keys a Monite secret may stand for: its text, and the bytes its base64 encodes."""
    keys: dict[MoniteKeyForm, bytes] = {"text": secret.encode()}
    # Not base64 after the prefix: only the text form can be meant.
    with contextlib.suppress(ValueError):
        keys["base64"] = _secret_key(secret)
    return keys


def verify_monite_signature(
    secret: str,
    header_value: str,
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> MoniteKeyForm:
    """Check Monite's ``Monite-Signature: t=<unix>,v1=<hex>`` header of a push; raise on failure.

    Returns which form of the secret made the signature. Monite documents the header's shape
    (hex HMAC-SHA256 over ``"{t}.{body}"``, several ``v1`` values allowed) but not whether the
    key is the ``whsec_…`` text itself (as Stripe does) or the bytes its base64 encodes (as
    Standard Webhooks does), so both are accepted; both need the secret.
    """
    fields: dict[str, list[str]] = {}
    for part in header_value.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(name, []).append(value)
    if "t" not in fields or "v1" not in fields:
        raise SignatureError("Monite-Signature needs t= and v1= parts")
    raw_timestamp = fields["t"][0]
    _check_timestamp(raw_timestamp, tolerance_s, now)
    signed = f"{raw_timestamp}.".encode() + body
    matched: MoniteKeyForm | None = None
    # Every key against every candidate, no early exit, so timing tells nothing useful.
    for form, key in _monite_keys(secret).items():
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode()
        for candidate in fields["v1"]:
            if hmac.compare_digest(candidate.lower().encode(), expected):
                matched = form
    if matched is None:
        raise SignatureError("no matching signature")
    return matched
