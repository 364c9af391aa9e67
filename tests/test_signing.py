"""Standard Webhooks signing, checked against the official libraries, and Monite's push scheme."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks
import svix.webhooks

from service.domain.signing import (
    SignatureError,
    generate_secret,
    sign,
    signature_header,
    verify_monite_signature,
    verify_signature,
)

BODY = b'{"type":"invoice.recognized","data":{"total":"1487.50","name":"M\xc3\xbcller"}}'
MSG_ID = "evt_2f1c0a9b"


def _headers(secret: str, timestamp: int, body: bytes = BODY) -> dict[str, str]:
    return {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, MSG_ID, timestamp, body),
    }


def test_generated_secret_is_whsec_and_32_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != generate_secret()


def test_standardwebhooks_library_verifies_our_signature() -> None:
    secret = generate_secret()
    headers = _headers(secret, int(time.time()))
    standardwebhooks.Webhook(secret).verify(BODY, headers, json_parse=False)


def test_svix_library_verifies_our_signature_with_svix_headers() -> None:
    secret = generate_secret()
    headers = {
        k.replace("webhook-", "svix-"): v for k, v in _headers(secret, int(time.time())).items()
    }
    svix.webhooks.Webhook(secret).verify(BODY, headers)


def test_we_verify_what_standardwebhooks_library_signs() -> None:
    secret = generate_secret()
    now = datetime.now(UTC)
    signature = standardwebhooks.Webhook(secret).sign(MSG_ID, now, BODY.decode())
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    verify_signature(secret, headers, BODY)


def test_we_verify_what_svix_library_signs() -> None:
    secret = generate_secret()
    now = datetime.now(UTC)
    signature = svix.webhooks.Webhook(secret).sign(MSG_ID, now, BODY.decode())
    headers = {
        "Webhook-Id": MSG_ID,
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": signature,
    }
    verify_signature(secret, headers, BODY)


def test_a_text_body_verifies_like_its_utf8_bytes() -> None:
    secret = generate_secret()
    now = int(time.time())
    verify_signature(secret, _headers(secret, now), BODY.decode(), now=now)


def test_header_names_are_case_insensitive() -> None:
    secret = generate_secret()
    headers = {k.upper(): v for k, v in _headers(secret, int(time.time())).items()}
    verify_signature(secret, headers, BODY)


def test_rotation_header_verifies_with_old_and_new_secret() -> None:
    old, new = generate_secret(), generate_secret()
    ts = int(time.time())
    value = signature_header([old, new], MSG_ID, ts, BODY)
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(ts), "webhook-signature": value}
    assert len(value.split(" ")) == 2
    verify_signature(old, headers, BODY)
    verify_signature(new, headers, BODY)
    standardwebhooks.Webhook(old).verify(BODY, headers, json_parse=False)


def test_signature_header_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one"):
        signature_header([], MSG_ID, 1, BODY)


def test_tampered_body_is_rejected() -> None:
    secret = generate_secret()
    headers = _headers(secret, int(time.time()))
    with pytest.raises(SignatureError, match="no matching signature"):
        verify_signature(secret, headers, BODY + b" ")


def test_other_secret_is_rejected() -> None:
    headers = _headers(generate_secret(), int(time.time()))
    with pytest.raises(SignatureError, match="no matching signature"):
        verify_signature(generate_secret(), headers, BODY)


def test_changed_message_id_is_rejected() -> None:
    secret = generate_secret()
    headers = _headers(secret, int(time.time())) | {"webhook-id": "evt_other"}
    with pytest.raises(SignatureError, match="no matching signature"):
        verify_signature(secret, headers, BODY)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_named(missing: str) -> None:
    secret = generate_secret()
    headers = _headers(secret, int(time.time()))
    del headers[missing]
    with pytest.raises(SignatureError, match=missing):
        verify_signature(secret, headers, BODY)


def test_stale_timestamp_is_rejected() -> None:
    secret = generate_secret()
    headers = _headers(secret, 1_000_000)
    with pytest.raises(SignatureError, match="too old"):
        verify_signature(secret, headers, BODY, now=1_000_000 + 301)


def test_future_timestamp_is_rejected() -> None:
    secret = generate_secret()
    headers = _headers(secret, 1_000_000)
    with pytest.raises(SignatureError, match="future"):
        verify_signature(secret, headers, BODY, now=1_000_000 - 301)


def test_timestamp_within_tolerance_is_accepted() -> None:
    secret = generate_secret()
    verify_signature(secret, _headers(secret, 1_000_000), BODY, now=1_000_000 + 299)


def test_non_numeric_timestamp_is_rejected() -> None:
    secret = generate_secret()
    headers = _headers(secret, int(time.time())) | {"webhook-timestamp": "yesterday"}
    with pytest.raises(SignatureError, match="whole number"):
        verify_signature(secret, headers, BODY)


def test_malformed_secret_error_does_not_reveal_it() -> None:
    bad = "whsec_not*base64*at-all"
    with pytest.raises(ValueError, match="not base64") as info:
        sign(bad, MSG_ID, 1, BODY)
    assert "not*base64" not in str(info.value)


def _monite_header(secret: str, t: int, body: bytes = BODY) -> str:
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def test_monite_signature_is_accepted() -> None:
    verify_monite_signature(
        "whsec_monite", _monite_header("whsec_monite", 1_710_139_795), BODY, now=1_710_139_800
    )


def test_monite_signature_with_wrong_secret_is_rejected() -> None:
    header = _monite_header("whsec_other", 1_710_139_795)
    with pytest.raises(SignatureError, match="no matching signature"):
        verify_monite_signature("whsec_monite", header, BODY, now=1_710_139_800)


def test_monite_signature_replayed_later_is_rejected() -> None:
    header = _monite_header("whsec_monite", 1_710_139_795)
    with pytest.raises(SignatureError, match="too old"):
        verify_monite_signature("whsec_monite", header, BODY, now=1_710_139_795 + 3600)


def test_monite_signature_without_parts_is_rejected() -> None:
    with pytest.raises(SignatureError, match="t= and v1="):
        verify_monite_signature("whsec_monite", "garbage", BODY)
