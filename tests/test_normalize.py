"""normalize(): the shared worked examples, every warning code, and the edge cases of issue 4."""

from __future__ import annotations

import json
import typing
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from service.domain.dates import parse_date
from service.domain.monite_models import decode_task
from service.domain.normalize import NormalizeContext, NotRecognizedError, normalize
from service.domain.schema import (
    CreditNoteDocument,
    InvoiceDocument,
    NormalizedDocument,
    ReceiptDocument,
    WarningCode,
)

LOCAL_FIXTURES = Path(__file__).resolve().parent / "fixtures"
ENTITY_ID = "9d3c1b2a-1111-4a2b-8c3d-4e5f6a7b8c9d"


def shared_fixture(*parts: str) -> Path:
    """A file of the project's shared examples (Monite input → normalized event).

    Copied from the design's ``shared/fixtures`` into ``tests/fixtures/shared``, so that a clone
    of this repository tests on its own, wherever it is checked out. The Monite inputs are byte
    for byte the design's; the expected ``normalized/`` outputs also carry the optional fields
    schema v1 gained since (issue 16: ``tax_breakdown``, ``terms``, a warning's ``related``).
    """
    return LOCAL_FIXTURES.joinpath("shared", *parts)


def _task(**recognized: Any) -> dict[str, Any]:
    """A successful invoice task whose recognized_data is built from the given fields.

    It states its payment terms, so that only the warnings a test is about are raised.
    """
    data: dict[str, Any] = {
        "type": "invoice",
        "sender": {"address": {}, "bank_account": {}},
        "recipient": {"address": {}, "bank_account": {}},
        "currency": "EUR",
        "payment_terms": "Net 30",
    }
    data.update(recognized)
    return {
        "id": "2b9f1c3e-7a41-4d2a-9a51-0c7c1f5e8d10",
        "created_at": "2026-11-20T10:15:00Z",
        "updated_at": "2026-11-20T10:15:11Z",
        "status": "success",
        "recognized_data": data,
    }


def _normalize(task: dict[str, Any], include_raw: bool = False) -> NormalizedDocument:
    body = json.dumps(task).encode()
    context = NormalizeContext(
        task_id=task["id"], entity_id=ENTITY_ID, include_raw=include_raw, body=body
    )
    return normalize(decode_task(body), context)


def _invoice(**recognized: Any) -> InvoiceDocument:
    document = _normalize(_task(**recognized))
    assert isinstance(document, InvoiceDocument)
    return document


def _builtins(document: NormalizedDocument) -> dict[str, Any]:
    return json.loads(msgspec.json.encode(document))


# -- the worked examples -------------------------------------------------------------------------

EXAMPLES = {
    "invoice_de": shared_fixture("normalized", "invoice_de.event.json"),
    "credit_note_gb": LOCAL_FIXTURES / "credit_note_gb.event.json",
    "receipt_at": LOCAL_FIXTURES / "receipt_at.event.json",
    "invoice_sparse": LOCAL_FIXTURES / "invoice_sparse.event.json",
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_fixture_normalizes_to_its_expected_document(name: str) -> None:
    expected = json.loads(EXAMPLES[name].read_text())["data"]
    body = shared_fixture("monite", f"ocr_task_{name}.json").read_bytes()
    context = NormalizeContext(task_id=expected["task_id"], entity_id=expected["entity_id"])
    document = normalize(decode_task(body), context)
    assert _builtins(document) == expected["document"]


def test_every_monite_success_fixture_has_an_expected_document() -> None:
    successes = {
        path.name.removeprefix("ocr_task_").removesuffix(".json")
        for path in shared_fixture("monite").glob("ocr_task_*.json")
        if decode_task(path.read_bytes()).status == "success"
    }
    assert successes == set(EXAMPLES)


# -- contract of normalize() ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ocr_task_processing.json", "ocr_task_error.json"])
def test_task_that_is_not_success_is_not_recognized(name: str) -> None:
    task = decode_task(shared_fixture("monite", name).read_bytes())
    with pytest.raises(NotRecognizedError, match="not 'success'"):
        normalize(task, NormalizeContext(task_id=task.id))


def test_success_without_recognized_data_is_not_recognized() -> None:
    task = _task()
    del task["recognized_data"]
    with pytest.raises(NotRecognizedError, match="no recognized_data"):
        _normalize(task)


def test_raw_is_absent_unless_asked() -> None:
    assert "raw" not in _builtins(_invoice(total_amount=10))


def test_raw_carries_recognized_data_bytes_exactly_as_received() -> None:
    body = shared_fixture("monite", "ocr_task_invoice_de.json").read_bytes()
    context = NormalizeContext(task_id="t", include_raw=True, body=body)
    encoded = msgspec.json.encode(normalize(decode_task(body), context))
    start = body.index(b'"recognized_data": ') + len(b'"recognized_data": ')
    raw = body[start : body.rindex(b"}", 0, body.rindex(b"}")) + 1]
    assert b'"raw":' + raw + b"}" in encoded


def test_include_raw_without_body_is_refused() -> None:
    with pytest.raises(ValueError, match="body"):
        NormalizeContext(task_id="t", include_raw=True)


def test_recognized_at_is_the_task_update_time_in_utc() -> None:
    task = _task(total_amount=1)
    task["updated_at"] = "2026-11-20T12:15:11+02:00"
    assert _normalize(task).source.recognized_at == datetime(2026, 11, 20, 10, 15, 11, tzinfo=UTC)


def test_kind_follows_monite_type() -> None:
    credit = _normalize(_task(type="credit_note", line_items=[]))
    receipt = _normalize(_task(type="receipt", line_items=[]))
    assert isinstance(credit, CreditNoteDocument)
    assert isinstance(receipt, ReceiptDocument)


# -- money ----------------------------------------------------------------------------------------


def test_jpy_amounts_have_no_minor_digits() -> None:
    total = _invoice(currency="JPY", total_amount=1500.0).total
    assert total is not None
    assert (total.amount, total.minor) == ("1500", 1500)


def test_kwd_amounts_have_three_minor_digits() -> None:
    total = _invoice(currency="KWD", total_amount=12.3456).total
    assert total is not None
    assert (total.amount, total.minor) == ("12.346", 12346)


def test_float_noise_is_rounded_away() -> None:
    body = json.dumps(_task()).replace('"EUR"', '"EUR", "total_amount": 0.30000000000000004')
    document = normalize(decode_task(body.encode()), NormalizeContext(task_id="t"))
    assert document.total is not None
    assert (document.total.amount, document.total.minor) == ("0.30", 30)


def test_lowercase_currency_is_upper_cased() -> None:
    document = _invoice(currency=" eur ", total_amount=5)
    assert document.currency == "EUR"
    assert document.total is not None
    assert document.total.minor == 500


def test_missing_currency_keeps_recognized_digits_without_minor() -> None:
    document = _invoice(currency=None, total_amount=99.999)
    assert document.total is not None
    assert (document.total.amount, document.total.minor, document.total.currency) == (
        "99.999",
        None,
        None,
    )


def test_amounts_only_in_line_items_without_currency_are_warned_about() -> None:
    document = _invoice(currency=None, line_items=[{"unit_price": 2.5}])
    assert [(w.code, w.field) for w in document.warnings] == [("currency_missing", "currency")]


def test_credit_note_keeps_negative_amounts() -> None:
    document = _normalize(
        _task(
            type="credit_note",
            original_invoice_number="INV-1",
            subtotal=-100.0,
            tax_amount=-20.0,
            total_amount=-120.0,
            line_items=[{"subtotal": -100.0, "total_amount": -120.0}],
        )
    )
    assert document.total is not None
    assert (document.total.amount, document.total.minor) == ("-120.00", -12000)
    assert document.warnings == []


def test_amount_due_is_total_minus_paid() -> None:
    document = _invoice(total_amount=100.0, amount_paid=30.5)
    assert document.amount_due is not None
    assert (document.amount_due.amount, document.amount_due.minor) == ("69.50", 6950)


def test_amount_due_is_null_when_paid_is_unknown() -> None:
    assert _invoice(total_amount=100.0).amount_due is None


def test_sums_within_one_minor_unit_per_item_raise_no_warning() -> None:
    lines = [{"subtotal": 33.33}, {"subtotal": 33.33}, {"subtotal": 33.33}]
    document = _invoice(subtotal=100.0, tax_amount=19.0, total_amount=119.01, line_items=lines)
    assert document.warnings == []


def test_tax_rate_and_quantity_are_plain_decimal_strings() -> None:
    document = _invoice(tax_rate=7.70, line_items=[{"quantity": 100.0, "tax_rate": 19.0}])
    assert document.tax_rate == "7.7"
    assert (document.line_items[0].quantity, document.line_items[0].tax_rate) == ("100", "19")


# -- parties --------------------------------------------------------------------------------------


def test_empty_address_and_bank_objects_become_null() -> None:
    seller = _invoice(sender={"name": "A", "address": {}, "bank_account": {}}).seller
    assert seller is not None
    assert (seller.address, seller.bank_account) == (None, None)


def test_party_with_nothing_recognized_is_null() -> None:
    assert _invoice().buyer is None


def test_iban_is_compacted_and_upper_cased() -> None:
    sender = {"address": {}, "bank_account": {"iban": "de89 3704 0044 0532 0130 00"}}
    seller = _invoice(sender=sender).seller
    assert seller is not None
    assert seller.bank_account is not None
    assert (seller.bank_account.iban, seller.bank_account.iban_valid) == (
        "DE89370400440532013000",
        True,
    )


def test_monite_extra_country_is_kept_without_warning() -> None:
    document = _invoice(sender={"address": {"country": "ic"}, "bank_account": {}})
    assert document.seller is not None
    assert document.seller.address is not None
    assert document.seller.address.country == "IC"
    assert document.warnings == []


# -- warnings: one case per code ------------------------------------------------------------------

WARNING_CASES: dict[WarningCode, tuple[dict[str, Any], str]] = {
    "line_items_mismatch": (
        {"subtotal": 100.0, "line_items": [{"subtotal": 60.0}, {"subtotal": 39.0}]},
        "subtotal",
    ),
    "totals_mismatch": ({"subtotal": 100.0, "tax_amount": 19.0, "total_amount": 120.0}, "total"),
    "paid_exceeds_total": ({"total_amount": 100.0, "amount_paid": 100.02}, "amount_paid"),
    "due_before_issue": ({"issue_date": "2026-11-10", "due_date": "2026-11-09"}, "due_date"),
    "date_unparseable": ({"issue_date": "next Tuesday"}, "issue_date"),
    "date_ambiguous": ({"issue_date": "03/04/2026"}, "issue_date"),
    "iban_invalid": (
        {"sender": {"address": {}, "bank_account": {"iban": "DE89 3704 0044 0532 0130 01"}}},
        "seller.bank_account.iban",
    ),
    "bic_invalid": (
        {"sender": {"address": {}, "bank_account": {"swift_bic": "COBAXXFF"}}},
        "seller.bank_account.bic",
    ),
    "currency_unknown": ({"currency": "XYZ", "total_amount": 1.0}, "currency"),
    "currency_missing": ({"currency": None, "total_amount": 1.0}, "currency"),
    "country_unknown": (
        {"recipient": {"address": {"country": "QQ"}, "bank_account": {}}},
        "buyer.address.country",
    ),
    "tax_rate_suspicious": ({"tax_rate": 0.19}, "tax_rate"),
    "number_out_of_range": ({"total_amount": 1e300}, "total"),
    "tax_breakdown_mismatch": (
        {"tax_rate": 19.0, "subtotal": 100.0, "tax_amount": 18.0, "total_amount": 118.0},
        "tax_breakdown[0]",
    ),
    "payment_terms_missing": ({"payment_terms": None, "total_amount": 10.0}, "payment_terms"),
    "vat_number_country_mismatch": (
        {
            "sender": {
                "vat_number": "FR40303265045",
                "address": {"country": "DE"},
                "bank_account": {},
            }
        },
        "seller.vat_number",
    ),
    "amount_due_mismatch": (
        {
            "total_amount": 100.0,
            "amount_paid": 0.0,
            "line_items": [{"subtotal": 100.0, "tax_rate": 19.0, "tax_amount": 19.0}],
        },
        "amount_due",
    ),
}
# Codes an invoice cannot raise, each with the test that raises it.
OTHER_WARNING_TESTS: dict[WarningCode, str] = {
    "credit_note_without_reference": "test_normalize_erp.py::"
    "test_credit_note_without_original_invoice_number_is_warned_about",
    "possible_duplicate": "test_duplicates.py::"
    "test_possible_duplicate_warning_points_at_the_earlier_event",
}


def test_every_warning_code_has_a_case() -> None:
    covered = set(WARNING_CASES) | set(OTHER_WARNING_TESTS)
    assert covered == set(typing.get_args(WarningCode))


@pytest.mark.parametrize("code", WARNING_CASES)
def test_warning_is_raised_for_its_inconsistency(code: WarningCode) -> None:
    recognized, field = WARNING_CASES[code]
    warnings = [(w.code, w.field) for w in _invoice(**recognized).warnings]
    assert warnings == [(code, field)]


def test_line_item_warning_names_the_line() -> None:
    document = _invoice(line_items=[{"tax_rate": 19.0}, {"tax_rate": 190.0}])
    assert [(w.code, w.field) for w in document.warnings] == [
        ("tax_rate_suspicious", "line_items[1].tax_rate")
    ]


def test_receipt_lines_with_only_gross_totals_are_checked_against_total() -> None:
    document = _normalize(
        _task(type="receipt", total_amount=10.0, line_items=[{"total_amount": 4.0}])
    )
    assert [(w.code, w.field) for w in document.warnings] == [("line_items_mismatch", "total")]


def test_receipt_discount_may_be_applied_after_the_lines() -> None:
    document = _normalize(
        _task(type="receipt", total_amount=9.0, discount=1.0, line_items=[{"total_amount": 10.0}])
    )
    assert document.warnings == []


def test_warning_messages_quote_recognized_values_briefly() -> None:
    document = _invoice(issue_date="x" * 5_000, total_amount=10**400)
    assert [len(w.message) < 100 for w in document.warnings] == [True, True]


def test_out_of_range_amount_becomes_null() -> None:
    assert _invoice(total_amount=1e300).total is None


def test_out_of_range_line_amount_is_null_with_a_warning_naming_it() -> None:
    lines = [{"subtotal": 5.0}, {"unit_price": 2.5, "total_amount": -1e16, "tax_rate": 0.5}]
    document = _invoice(line_items=lines)
    line = document.line_items[1]
    assert (line.unit_price is not None, line.total) == (True, None)
    assert [(w.code, w.field) for w in document.warnings] == [
        ("tax_rate_suspicious", "line_items[1].tax_rate"),
        ("number_out_of_range", "line_items[1].total"),
    ]


# -- dates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", date(2026, 11, 1)),
        ("2026-11-01T00:00:00Z", date(2026, 11, 1)),
        ("2026/11/01", date(2026, 11, 1)),
        ("01.11.2026", date(2026, 11, 1)),
        ("1. 11. 2026", date(2026, 11, 1)),
        ("25/12/2026", date(2026, 12, 25)),
        ("12/25/2026", date(2026, 12, 25)),
        ("05/05/2026", date(2026, 5, 5)),
        ("1 November 2026", date(2026, 11, 1)),
        ("Nov 1, 2026", date(2026, 11, 1)),
        ("01-Nov-2026", date(2026, 11, 1)),
        ("September 3rd, 2026", date(2026, 9, 3)),
    ],
)
def test_common_date_forms_are_read(text: str, expected: date) -> None:
    assert parse_date(text) == (expected, None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("03/04/2026", "date_ambiguous"),
        ("03-04-2026", "date_ambiguous"),
        ("31.02.2026", "date_unparseable"),
        ("2026-13-01", "date_unparseable"),
        ("13/13/2026", "date_unparseable"),
        ("1 Brumaire 2026", "date_unparseable"),
        ("01.11.26", "date_unparseable"),
        ("", "date_unparseable"),
    ],
)
def test_unreadable_or_ambiguous_dates_are_never_guessed(text: str, problem: str) -> None:
    assert parse_date(text) == (None, problem)


def test_unparseable_date_is_null() -> None:
    assert _invoice(issue_date="soon").issue_date is None


def test_receipt_issued_at_keeps_its_offset_and_gives_the_local_date() -> None:
    document = _normalize(
        _task(type="receipt", line_items=[], issued_at="2026-11-22T23:30:00-05:00")
    )
    assert isinstance(document, ReceiptDocument)
    assert _builtins(document)["issued_at"] == "2026-11-22T23:30:00-05:00"
    assert document.issue_date == "2026-11-22"


def test_receipt_issued_at_without_offset_stays_local_with_no_invented_offset() -> None:
    document = _normalize(_task(type="receipt", line_items=[], issued_at="2026-11-22T18:47:31"))
    assert _builtins(document)["issued_at"] == "2026-11-22T18:47:31"


def test_receipt_with_a_date_only_has_no_issue_time() -> None:
    document = _normalize(_task(type="receipt", line_items=[], issued_at="22.11.2026"))
    assert isinstance(document, ReceiptDocument)
    assert (document.issued_at, document.issue_date, document.warnings) == (None, "2026-11-22", [])
