"""The duplicate hint's pure half: fingerprints of recognized documents, and the warning."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from service.domain.duplicates import duplicate_fingerprint, with_possible_duplicate
from service.domain.events import encode_event, recognized_event
from service.domain.schema import DocumentWarning, RelatedEvent, event_json_schema
from tests.test_normalize import _normalize, _task

RELATED = RelatedEvent(watch_id="wat_first", event_id="evt_first")


def _seller(**fields: Any) -> dict[str, Any]:
    return {"address": {}, "bank_account": {}, **fields}


def _fingerprint(**recognized: Any) -> str | None:
    fields = {
        "sender": _seller(name="Müller GmbH", vat_number="DE123456789"),
        "document_number": "RE-2026-0815",
        "total_amount": 1487.5,
        **recognized,
    }
    return duplicate_fingerprint(_normalize(_task(**fields)))


def test_the_same_invoice_has_the_same_fingerprint() -> None:
    assert _fingerprint() == _fingerprint()
    assert _fingerprint() is not None


@pytest.mark.parametrize(
    "recognized",
    [
        {"document_number": " re-2026 0815 "},
        {"sender": _seller(name="Other name", vat_number="de 123 456 789")},
        {"issue_date": "2026-11-02", "line_items": [{"subtotal": 1.0}]},
        {"total_amount": 1487.499},
    ],
    ids=["number-spacing-and-case", "vat-spacing-other-name", "other-details", "same-rounded"],
)
def test_fingerprint_ignores_what_does_not_identify_the_document(
    recognized: dict[str, Any],
) -> None:
    assert _fingerprint(**recognized) == _fingerprint()


@pytest.mark.parametrize(
    "recognized",
    [
        {"document_number": "RE-2026-0816"},
        {"total_amount": 1487.51},
        {"currency": "CHF"},
        {"sender": _seller(name="Müller GmbH", vat_number="DE999999999")},
        {"type": "credit_note", "line_items": []},
    ],
    ids=["number", "total", "currency", "seller-vat", "kind"],
)
def test_fingerprint_differs_when_an_identifying_part_differs(recognized: dict[str, Any]) -> None:
    assert _fingerprint(**recognized) != _fingerprint()


def test_seller_without_vat_number_is_known_by_its_normalized_name() -> None:
    first = _fingerprint(sender=_seller(name="Müller Bürobedarf GmbH"))
    second = _fingerprint(sender=_seller(name="MÜLLER  Bürobedarf GmbH."))
    assert first == second


@pytest.mark.parametrize(
    "recognized",
    [
        {"sender": _seller()},
        {"document_number": None},
        {"document_number": " - "},
        {"total_amount": None},
        {"type": "receipt", "line_items": []},
    ],
    ids=["no-seller", "no-number", "number-of-punctuation", "no-total", "receipt"],
)
def test_no_fingerprint_without_seller_number_and_total_or_for_receipts(
    recognized: dict[str, Any],
) -> None:
    assert _fingerprint(**recognized) is None


def test_fingerprint_is_a_digest_without_the_seller_or_number() -> None:
    fingerprint = _fingerprint()
    assert fingerprint is not None
    assert len(fingerprint) == 64
    assert "DE123456789" not in fingerprint.upper()


def test_possible_duplicate_warning_points_at_the_earlier_event() -> None:
    document = _normalize(_task(payment_terms=None, total_amount=10.0))
    flagged = with_possible_duplicate(document, RELATED)
    assert flagged.warnings[:-1] == document.warnings
    assert flagged.warnings[-1] == DocumentWarning(
        code="possible_duplicate",
        field="document_number",
        message="the same seller, document number and total were received before (event evt_first)",
        related=RELATED,
    )
    assert type(flagged) is type(document)


def test_flagged_document_validates_against_the_published_schema() -> None:
    flagged = with_possible_duplicate(_normalize(_task(total_amount=10.0)), RELATED)
    event = recognized_event(
        watch_id="wat_second",
        task_id="t",
        entity_id=None,
        metadata={},
        document=flagged,
        at=datetime(2026, 11, 20, tzinfo=UTC),
    )
    body = json.loads(encode_event(event))
    jsonschema.Draft202012Validator(event_json_schema()).validate(body)
    assert body["data"]["document"]["warnings"][-1]["related"] == {
        "watch_id": "wat_first",
        "event_id": "evt_first",
    }
