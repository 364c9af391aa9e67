"""normalize() for ERP importers (issue 16): tax breakdown, terms, due dates, EN 16931 checks."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from service.domain.schema import (
    WARNING_MEANINGS,
    CreditNoteDocument,
    DocumentWarning,
    PaymentTerms,
    ReceiptDocument,
    WarningCode,
)
from tests.test_normalize import _invoice, _normalize, _task


def _credit_note(**recognized: Any) -> CreditNoteDocument:
    document = _normalize(_task(type="credit_note", line_items=[], **recognized))
    assert isinstance(document, CreditNoteDocument)
    return document


def _receipt(**recognized: Any) -> ReceiptDocument:
    document = _normalize(_task(type="receipt", **recognized))
    assert isinstance(document, ReceiptDocument)
    return document


def _codes(warnings: list[DocumentWarning]) -> list[tuple[str, str | None]]:
    return [(w.code, w.field) for w in warnings]


def _breakdown(document: Any) -> list[tuple[str, int | None, int | None]]:
    return [(e.rate, e.taxable.minor, e.tax.minor) for e in document.tax_breakdown]


def _line(net: float, rate: float, tax: float | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {"subtotal": net, "tax_rate": rate}
    if tax is not None:
        line["tax_amount"] = tax
    return line


# -- tax breakdown --------------------------------------------------------------------------------


def test_breakdown_groups_the_lines_by_rate_in_rate_order() -> None:
    lines = [_line(100.0, 19.0, 19.0), _line(50.0, 7.0, 3.5), _line(10.0, 19.0, 1.9)]
    document = _invoice(subtotal=160.0, tax_amount=24.4, total_amount=184.4, line_items=lines)
    assert _breakdown(document) == [("7", 5000, 350), ("19", 11000, 2090)]
    assert document.warnings == []


def test_breakdown_rates_sort_as_numbers_not_as_text() -> None:
    lines = [_line(10.0, 10.0, 1.0), _line(10.0, 5.5, 0.55), _line(10.0, 2.1, 0.21)]
    assert [e.rate for e in _invoice(line_items=lines).tax_breakdown or []] == ["2.1", "5.5", "10"]


def test_breakdown_taxes_unprinted_line_tax_as_br_co_17_defines() -> None:
    document = _invoice(line_items=[_line(33.33, 19.0), _line(33.33, 19.0)])
    assert _breakdown(document) == [("19", 6666, 1267)]


def test_breakdown_takes_a_line_net_from_gross_minus_tax() -> None:
    lines = [{"tax_rate": 20.0, "tax_amount": 20.0, "total_amount": 120.0}]
    assert _breakdown(_invoice(line_items=lines)) == [("20", 10000, 2000)]


def test_breakdown_comes_from_the_header_when_a_line_has_no_rate() -> None:
    lines = [_line(100.0, 19.0, 19.0), {"subtotal": 50.0}]
    document = _invoice(
        tax_rate=19.0, subtotal=150.0, tax_amount=28.5, total_amount=178.5, line_items=lines
    )
    assert _breakdown(document) == [("19", 15000, 2850)]


def test_breakdown_from_the_header_needs_its_net_or_its_tax_besides_the_total() -> None:
    assert _invoice(tax_rate=19.0, total_amount=119.0).tax_breakdown is None
    assert _breakdown(_invoice(tax_rate=19.0, subtotal=100.0, total_amount=119.0)) == [
        ("19", 10000, 1900)
    ]
    assert _breakdown(_invoice(tax_rate=19.0, tax_amount=19.0, total_amount=119.0)) == [
        ("19", 10000, 1900)
    ]


def test_breakdown_is_null_without_any_rate() -> None:
    assert _invoice(subtotal=100.0, tax_amount=19.0, total_amount=119.0).tax_breakdown is None


def test_breakdown_is_null_in_a_currency_without_minor_units() -> None:
    document = _invoice(currency="XYZ", tax_rate=19.0, subtotal=100.0, tax_amount=19.0)
    assert document.tax_breakdown is None


@pytest.mark.parametrize(
    ("currency", "net", "tax", "expected"),
    [("JPY", 1000.0, 100.0, ("10", 1000, 100)), ("KWD", 1.0, 0.1, ("10", 1000, 100))],
)
def test_breakdown_is_in_the_currency_minor_units(
    currency: str, net: float, tax: float, expected: tuple[str, int, int]
) -> None:
    document = _invoice(currency=currency, tax_rate=10.0, subtotal=net, tax_amount=tax)
    assert _breakdown(document) == [expected]


def test_breakdown_of_a_credit_note_keeps_negative_amounts() -> None:
    document = _credit_note(
        original_invoice_number="INV-1",
        tax_rate=20.0,
        subtotal=-100.0,
        tax_amount=-20.0,
        total_amount=-120.0,
    )
    assert _breakdown(document) == [("20", -10000, -2000)]


def test_receipt_breakdown_comes_from_its_header() -> None:
    document = _receipt(
        tax_rate=10.0, subtotal=20.64, tax_amount=2.06, line_items=[{"total_amount": 22.7}]
    )
    assert _breakdown(document) == [("10", 2064, 206)]


def test_tax_off_by_one_minor_unit_per_line_is_rounding() -> None:
    lines = [_line(0.05, 19.0, 0.01), _line(0.05, 19.0, 0.01)]  # 0.0095 each: 0.02 in all
    assert _invoice(line_items=lines).warnings == []


def test_tax_not_rate_times_taxable_names_the_entry() -> None:
    lines = [_line(100.0, 7.0, 7.0), _line(100.0, 19.0, 15.0)]
    document = _invoice(line_items=lines)
    assert _codes(document.warnings) == [("tax_breakdown_mismatch", "tax_breakdown[1]")]
    assert "15.00 is not 19 % of 100.00 (19.00)" in document.warnings[0].message


def test_breakdown_tax_disagreeing_with_the_header_tax_is_a_totals_mismatch() -> None:
    lines = [_line(100.0, 19.0, 19.0)]
    document = _invoice(subtotal=100.0, tax_amount=20.0, total_amount=120.0, line_items=lines)
    assert _codes(document.warnings) == [("totals_mismatch", "tax")]


def test_breakdown_taxable_disagreeing_with_the_subtotal_is_said_once() -> None:
    lines = [_line(100.0, 19.0, 19.0)]
    document = _invoice(subtotal=90.0, line_items=lines)
    assert _codes(document.warnings) == [("line_items_mismatch", "subtotal")]


def test_breakdown_taxable_from_gross_lines_disagreeing_with_the_subtotal() -> None:
    lines = [{"tax_rate": 20.0, "tax_amount": 20.0, "total_amount": 120.0}]
    document = _invoice(subtotal=90.0, line_items=lines)
    assert _codes(document.warnings) == [("totals_mismatch", "subtotal")]


# -- terms and due dates --------------------------------------------------------------------------


def test_understood_terms_are_parsed_and_the_text_is_kept() -> None:
    document = _invoice(payment_terms=" 2/10 net 30 ")
    assert document.payment_terms == "2/10 net 30"
    assert document.terms == PaymentTerms(net_days=30, discount_percent="2", discount_days=10)


def test_terms_not_understood_are_null_and_the_text_is_kept() -> None:
    document = _invoice(payment_terms="30 days EOM")
    assert (document.payment_terms, document.terms) == ("30 days EOM", None)


def test_printed_due_date_is_printed() -> None:
    document = _invoice(issue_date="2026-11-01", due_date="2026-11-20")
    assert (document.due_date, document.due_date_source) == ("2026-11-20", "printed")


def test_missing_due_date_is_derived_from_issue_date_and_net_days() -> None:
    document = _invoice(issue_date="2026-11-15", payment_terms="30 Tage netto")
    assert (document.due_date, document.due_date_source) == ("2026-12-15", "derived")


def test_due_on_receipt_derives_the_issue_date() -> None:
    document = _invoice(issue_date="2026-11-15", payment_terms="due on receipt")
    assert (document.due_date, document.due_date_source) == ("2026-11-15", "derived")


def test_printed_due_date_wins_over_terms() -> None:
    document = _invoice(issue_date="2026-11-01", due_date="2026-11-10", payment_terms="Net 30")
    assert (document.due_date, document.due_date_source) == ("2026-11-10", "printed")


def test_unreadable_printed_due_date_is_not_replaced_by_a_derived_one() -> None:
    document = _invoice(issue_date="2026-11-01", due_date="soon", payment_terms="Net 30")
    assert (document.due_date, document.due_date_source) == (None, None)


def test_no_due_date_without_issue_date() -> None:
    document = _invoice(payment_terms="Net 30")
    assert (document.due_date, document.due_date_source) == (None, None)


def test_discount_only_terms_derive_no_due_date() -> None:
    document = _invoice(issue_date="2026-11-01", payment_terms="3% Skonto innerhalb 8 Tagen")
    assert (document.due_date, document.due_date_source) == (None, None)


def test_derived_due_date_past_the_calendar_is_null() -> None:
    document = _invoice(issue_date="9999-12-31", payment_terms="Net 30")
    assert (document.due_date, document.due_date_source) == (None, None)


# -- payment_terms_missing (BR-CO-25) -------------------------------------------------------------


def test_amount_due_with_a_due_date_needs_no_terms() -> None:
    document = _invoice(payment_terms=None, total_amount=10.0, due_date="2026-12-01")
    assert document.warnings == []


def test_nothing_due_needs_no_terms() -> None:
    document = _invoice(payment_terms=None, total_amount=10.0, amount_paid=10.0)
    assert document.warnings == []


def test_terms_not_understood_count_as_missing() -> None:
    document = _invoice(payment_terms="see contract", total_amount=10.0)
    assert _codes(document.warnings) == [("payment_terms_missing", "payment_terms")]


def test_unknown_total_needs_no_terms() -> None:
    assert _invoice(payment_terms=None).warnings == []


# -- VAT numbers (BR-CO-9) ------------------------------------------------------------------------


def _party(vat_number: str, country: str) -> dict[str, Any]:
    return {"vat_number": vat_number, "address": {"country": country}, "bank_account": {}}


def test_buyer_vat_number_of_another_country_is_warned_about() -> None:
    document = _invoice(recipient=_party("NL859123456B01", "BE"))
    assert _codes(document.warnings) == [("vat_number_country_mismatch", "buyer.vat_number")]


@pytest.mark.parametrize(
    ("vat_number", "country"),
    [
        ("DE 123 456 789", "DE"),
        ("EL094259216", "GR"),
        ("XI123456789", "GB"),
        ("27/123/45678", "DE"),
        ("EU372000041", "DE"),
    ],
    ids=["same-country", "greece-el", "northern-ireland-xi", "no-prefix", "not-a-country"],
)
def test_vat_number_prefix_naming_the_country_is_fine(vat_number: str, country: str) -> None:
    assert _invoice(sender=_party(vat_number, country)).warnings == []


def test_vat_number_without_a_country_is_not_checked() -> None:
    sender = {"vat_number": "FR40303265045", "address": {}, "bank_account": {}}
    assert _invoice(sender=sender).warnings == []


# -- credit notes ---------------------------------------------------------------------------------


def test_credit_note_without_original_invoice_number_is_warned_about() -> None:
    document = _credit_note(original_invoice_number="  ")
    assert _codes(document.warnings) == [
        ("credit_note_without_reference", "original_invoice_number")
    ]


def test_credit_note_naming_its_invoice_has_no_warning() -> None:
    assert _credit_note(original_invoice_number="INV-00917").warnings == []


# -- amount due (BR-CO-16) ------------------------------------------------------------------------


def test_amount_due_agreeing_with_the_breakdown_has_no_warning() -> None:
    lines = [_line(100.0, 19.0, 19.0)]
    document = _invoice(total_amount=119.0, amount_paid=19.0, line_items=lines)
    assert document.amount_due is not None
    assert (document.amount_due.minor, document.warnings) == (10000, [])


def test_amount_due_mismatch_is_not_repeated_after_a_totals_mismatch() -> None:
    lines = [_line(100.0, 19.0, 19.0)]
    document = _invoice(
        subtotal=100.0, tax_amount=19.0, total_amount=100.0, amount_paid=0.0, line_items=lines
    )
    assert _codes(document.warnings) == [("totals_mismatch", "total")]


# -- the warnings' contract -----------------------------------------------------------------------


def test_every_warning_code_is_documented_with_its_meaning() -> None:
    assert list(WARNING_MEANINGS) == list(typing.get_args(WarningCode))


def test_normalize_leaves_related_null() -> None:
    document = _invoice(payment_terms=None, total_amount=1e300, issue_date="soon")
    assert document.warnings
    assert {w.related for w in document.warnings} == {None}
