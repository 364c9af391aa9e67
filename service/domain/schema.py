"""The normalized event and document schema: the public contract delivered to callbacks.

Every field's meaning is written once, as an annotated type below, and shared by the three
document kinds, so the JSON Schema generated from these Structs
(``python -m service.domain``, committed as ``docs/event-schema.json``) documents itself.
Changing a field here is a contract change: it needs a new ``SCHEMA_VERSION``. Over 400 lines,
for a reason: the published contract is read (and reviewed) in one file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

SCHEMA_VERSION: Final = "2026-11-01"

EventType = Literal[
    "invoice.recognized", "credit_note.recognized", "receipt.recognized", "ocr.failed"
]
FailureCode = Literal[
    "ocr_error", "task_not_found", "deadline_exceeded", "invalid_payload", "upstream_unauthorized"
]
WarningCode = Literal[
    "line_items_mismatch",
    "totals_mismatch",
    "paid_exceeds_total",
    "due_before_issue",
    "date_unparseable",
    "date_ambiguous",
    "iban_invalid",
    "bic_invalid",
    "currency_unknown",
    "currency_missing",
    "country_unknown",
    "tax_rate_suspicious",
    "number_out_of_range",
    "tax_breakdown_mismatch",
    "payment_terms_missing",
    "vat_number_country_mismatch",
    "credit_note_without_reference",
    "amount_due_mismatch",
    "possible_duplicate",
]
# What each warning code means, and the EN 16931 rule it follows where there is one: published as
# the description of ``DocumentWarning.code`` (a test keeps the keys equal to ``WarningCode``).
WARNING_MEANINGS: Final[dict[str, str]] = {
    "line_items_mismatch": "the line amounts do not sum to the subtotal (or, with gross lines "
    "only, to the total); EN 16931 BR-CO-10",
    "totals_mismatch": "subtotal + tax is not the total (EN 16931 BR-CO-15), or the tax breakdown "
    "does not sum to the subtotal or tax (BR-CO-13, BR-CO-14)",
    "paid_exceeds_total": "the amount paid exceeds the total",
    "due_before_issue": "the due date is before the issue date",
    "date_unparseable": "a printed date could not be read; the date is null",
    "date_ambiguous": "a printed date reads as two dates (day or month first); the date is null",
    "iban_invalid": "the IBAN fails the country length or mod-97 check",
    "bic_invalid": "the BIC is malformed or names an unknown country",
    "currency_unknown": "the currency is not in ISO 4217; amounts are kept unrounded",
    "currency_missing": "amounts were recognized without a currency",
    "country_unknown": "a country is not ISO 3166-1 alpha-2 (nor one of Monite's extras)",
    "tax_rate_suspicious": "a tax rate is not a plausible percentage (0, or 1 to 100)",
    "number_out_of_range": "a recognized number is no amount (not finite, or 10**15 and beyond)",
    "tax_breakdown_mismatch": "an entry's tax is not its taxable amount times its rate, rounded "
    "to the currency, within one minor unit per line (EN 16931 BR-CO-17); field names the entry",
    "payment_terms_missing": "a positive amount is due but there is neither a due date nor "
    "understood payment terms (EN 16931 BR-CO-25)",
    "vat_number_country_mismatch": "a VAT number's country prefix is not the party's country "
    "(EN 16931 BR-CO-9: the prefix names the issuing country; EL is Greece, XI Northern Ireland)",
    "credit_note_without_reference": "a credit note names no invoice it credits (EN 16931 BG-3, "
    "preceding invoice reference BT-25)",
    "amount_due_mismatch": "the amount due (total - paid) disagrees with the tax breakdown's "
    "gross amount minus paid (EN 16931 BR-CO-16 with BR-CO-15)",
    "possible_duplicate": "the same API client received a document with the same seller, number "
    "and total before; related names its watch and event",
}

# tz=True is what makes msgspec publish ``format: date-time`` (RFC 3339 requires an offset).
_AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
_DecimalString = Annotated[str, msgspec.Meta(pattern=r"^-?[0-9]+(\.[0-9]+)?$")]


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


_Text = Annotated[str | None, _doc("As printed on the document; null when not recognized.")]
_DecimalText = Annotated[
    _DecimalString | None,
    _doc("Exact decimal number as a string (no exponent, no float); null when not recognized."),
]


class _Wire(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every public Struct: immutable, keyword-only, and free of reference cycles."""


class Money(_Wire, frozen=True):
    """An amount of money, exact: floats never appear on the wire."""

    amount: Annotated[
        _DecimalString,
        _doc(
            "Decimal string rounded to the currency's ISO 4217 exponent (JPY 0, EUR 2, KWD 3); "
            "with an unknown or missing currency, the recognized value unrounded."
        ),
    ]
    minor: Annotated[
        int | None,
        _doc("The same value in integer minor units (cents); null when the currency is unknown."),
    ]
    currency: Annotated[
        str | None, _doc("ISO 4217 code as recognized (upper-case); null when not recognized.")
    ]


class Address(_Wire, frozen=True):
    """A postal address; every part null when not recognized."""

    street: Annotated[str | None, _doc("Street and house number.")]
    city: _Text
    postal_code: _Text
    state: _Text
    country: Annotated[
        str | None,
        _doc(
            "ISO 3166-1 alpha-2, upper-case; also Monite's extras IC (Canary Islands), "
            "EA (Ceuta and Melilla), AN (Netherlands Antilles)."
        ),
    ]


class BankAccount(_Wire, frozen=True):
    """A bank account printed on the document."""

    iban: Annotated[str | None, _doc("IBAN without spaces, upper-case, even when invalid.")]
    iban_valid: Annotated[
        bool | None,
        _doc("Whether the IBAN passes the country length and mod-97 checks; null without IBAN."),
    ]
    bic: Annotated[str | None, _doc("BIC/SWIFT code, upper-case, even when invalid.")]
    account_number: Annotated[str | None, _doc("A domestic account number, as printed.")]


class Party(_Wire, frozen=True):
    """A seller or buyer; null as a whole when nothing about it was recognized."""

    name: _Text
    email: _Text
    tax_number: _Text
    vat_number: _Text
    address: Annotated[Address | None, _doc("Null when no part of the address was recognized.")]
    bank_account: Annotated[BankAccount | None, _doc("Null when no bank detail was recognized.")]


_Amount = Annotated[Money | None, _doc("Null when not recognized.")]
_TaxRate = Annotated[
    _DecimalString | None, _doc('Tax rate in percent as an exact decimal string ("19", "7.7").')
]


class LineItem(_Wire, frozen=True):
    """One line of the document, in document order."""

    position: Annotated[int, msgspec.Meta(ge=1, description="1-based position in the document.")]
    name: _Text
    description: _Text
    quantity: _DecimalText
    unit: _Text
    unit_price: _Amount
    subtotal: Annotated[Money | None, _doc("Net amount of the line; null when not recognized.")]
    tax_rate: _TaxRate
    tax_amount: _Amount
    total: Annotated[Money | None, _doc("Gross amount of the line; null when not recognized.")]
    reference: Annotated[str | None, _doc("Article number or line reference, as printed.")]


class RelatedEvent(_Wire, frozen=True):
    """An earlier event a warning points at (the first of a possible duplicate)."""

    watch_id: Annotated[str, _doc("The watch that produced the earlier event.")]
    event_id: Annotated[str, _doc("The earlier event's id (its webhook-id).")]


class DocumentWarning(_Wire, frozen=True):
    """Something a human should check: an inconsistency or a value that could not be read."""

    code: Annotated[
        WarningCode,
        _doc(
            "Machine-readable kind of the warning:\n"
            + "\n".join(f"- {code}: {meaning}" for code, meaning in WARNING_MEANINGS.items())
        ),
    ]
    field: Annotated[
        str | None,
        _doc('Path of the field concerned in this document ("line_items[2].total"), if one.'),
    ]
    message: Annotated[str, _doc("Human-readable explanation.")]
    # Defaults keep events of schema v1 from before these fields valid: additions are optional.
    related: Annotated[
        RelatedEvent | None,
        _doc("The earlier event of a possible_duplicate; null on every other warning."),
    ] = None


class TaxBreakdownEntry(_Wire, frozen=True):
    """One VAT rate of the document (EN 16931 BG-23, VAT breakdown)."""

    rate: Annotated[_DecimalString, _doc('Tax rate in percent as an exact decimal string ("19").')]
    taxable: Annotated[Money, _doc("Net amount taxed at this rate (BT-116).")]
    tax: Annotated[Money, _doc("Tax at this rate (BT-117).")]


_Days = Annotated[int, msgspec.Meta(ge=0)]


class PaymentTerms(_Wire, frozen=True):
    """The printed payment terms, understood; every part null when the text does not say it."""

    net_days: Annotated[
        _Days | None, _doc("Days after the issue date the total is due (0: at once).")
    ]
    discount_percent: Annotated[
        _DecimalString | None, _doc('Early-payment discount in percent ("2"), if any.')
    ]
    discount_days: Annotated[_Days | None, _doc("Days after the issue date the discount holds.")]


class Source(_Wire, frozen=True):
    """Where the document came from."""

    provider: Literal["monite"]
    task_id: Annotated[str, _doc("Monite OCR task id.")]
    entity_id: Annotated[str | None, _doc("Monite entity the task belongs to, if known.")]
    recognized_at: Annotated[
        _AwareDatetime, _doc("When Monite finished the task (its updated_at), UTC.")
    ]


_SchemaVersion = Annotated[str, _doc("Version of this schema, a date.")]
_DocumentNumber = Annotated[str | None, _doc("Invoice, credit note or receipt number.")]
_IssueDate = Annotated[
    str | None, _doc("Date of issue, ISO YYYY-MM-DD; null (with a warning) when unreadable.")
]
_Currency = Annotated[
    str | None, _doc("ISO 4217 code, upper-case; kept with a warning when not in ISO 4217.")
]
_Subtotal = Annotated[Money | None, _doc("Net total before tax.")]
_Tax = Annotated[Money | None, _doc("Total tax.")]
_Total = Annotated[Money | None, _doc("Gross total.")]
_Seller = Annotated[Party | None, _doc("The issuer (Monite's sender).")]
_Buyer = Annotated[Party | None, _doc("The addressee (Monite's recipient).")]
_LineItems = Annotated[list[LineItem], _doc("Recognized lines, possibly empty.")]
_Warnings = Annotated[
    list[DocumentWarning], _doc("Inconsistencies to check; empty when the document adds up.")
]
_TaxBreakdown = Annotated[
    list[TaxBreakdownEntry] | None,
    _doc(
        "Taxable amount and tax per rate, ordered by rate (EN 16931 BG-23): from the line items "
        "when every line has a rate and a net amount, else from the header's single rate and "
        "amounts; null when nothing supports it or the currency has no ISO 4217 minor unit."
    ),
]
_Raw = Annotated[
    msgspec.Raw | msgspec.UnsetType,
    _doc("Monite's recognized_data exactly as received; present only when the watch asked for it."),
]


class InvoiceDocument(_Wire, frozen=True, kw_only=True, tag_field="kind", tag="invoice"):
    """A recognized invoice."""

    schema_version: _SchemaVersion
    document_number: _DocumentNumber
    issue_date: _IssueDate
    due_date: Annotated[str | None, _doc("Payment due date, ISO YYYY-MM-DD.")]
    due_date_source: Annotated[
        Literal["printed", "derived"] | None,
        _doc(
            "printed: due_date as printed; derived: issue_date + terms.net_days, as none was "
            "printed; null without a due date."
        ),
    ] = None
    payment_terms: _Text
    terms: Annotated[
        PaymentTerms | None,
        _doc("payment_terms understood; null when the text is missing or not understood."),
    ] = None
    currency: _Currency
    subtotal: _Subtotal
    tax: _Tax
    total: _Total
    amount_paid: Annotated[Money | None, _doc("Amount already paid.")]
    amount_due: Annotated[Money | None, _doc("total - amount_paid, when both are known.")]
    tax_rate: _TaxRate
    tax_breakdown: _TaxBreakdown = None
    seller: _Seller
    buyer: _Buyer
    line_items: _LineItems
    warnings: _Warnings
    source: Source
    raw: _Raw = msgspec.UNSET


class CreditNoteDocument(_Wire, frozen=True, kw_only=True, tag_field="kind", tag="credit_note"):
    """A recognized credit note."""

    schema_version: _SchemaVersion
    document_number: _DocumentNumber
    original_invoice_number: Annotated[str | None, _doc("Number of the invoice being credited.")]
    issue_date: _IssueDate
    currency: _Currency
    subtotal: _Subtotal
    tax: _Tax
    total: _Total
    tax_rate: _TaxRate
    tax_breakdown: _TaxBreakdown = None
    seller: _Seller
    buyer: _Buyer
    line_items: _LineItems
    warnings: _Warnings
    source: Source
    raw: _Raw = msgspec.UNSET


class ReceiptDocument(_Wire, frozen=True, kw_only=True, tag_field="kind", tag="receipt"):
    """A recognized receipt: it has a time of issue and no buyer."""

    schema_version: _SchemaVersion
    document_number: _DocumentNumber
    issue_date: Annotated[str | None, _doc("Local date of issued_at (or the date alone), ISO.")]
    issued_at: Annotated[
        datetime | None,
        msgspec.Meta(
            description=(
                "Time of issue as printed. With an offset when the receipt (or Monite) gives one:"
                " RFC 3339. Without one it is the local time of the place of sale, sent as"
                " YYYY-MM-DDTHH:MM:SS with no offset: none is invented, and it is not UTC."
            ),
            extra_json_schema={
                "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$"
            },
        ),
    ]
    currency: _Currency
    subtotal: _Subtotal
    tax: _Tax
    total: _Total
    discount: Annotated[Money | None, _doc("Discount granted on the receipt.")]
    tax_rate: _TaxRate
    tax_breakdown: _TaxBreakdown = None
    seller: _Seller
    line_items: _LineItems
    warnings: _Warnings
    source: Source
    raw: _Raw = msgspec.UNSET


NormalizedDocument = InvoiceDocument | CreditNoteDocument | ReceiptDocument


class EventError(_Wire, frozen=True):
    """Why no document could be delivered."""

    code: Annotated[FailureCode, _doc("Machine-readable reason.")]
    message: Annotated[str, _doc("Human-readable explanation (never contains credentials).")]


class EventData(_Wire, frozen=True):
    """The payload of an event: the watch it concerns and its outcome."""

    watch_id: Annotated[str, _doc("The watch that produced this event.")]
    task_id: Annotated[str, _doc("Monite OCR task id.")]
    entity_id: Annotated[str | None, _doc("Monite entity id given at registration, if any.")]
    metadata: Annotated[dict[str, Any], _doc("The caller's metadata, echoed unchanged.")]
    document: Annotated[
        NormalizedDocument | None, _doc("The normalized document; null for ocr.failed.")
    ]
    error: Annotated[EventError | None, _doc("Why the task failed; null unless ocr.failed.")]


class Event(_Wire, frozen=True):
    """An event delivered to a callback (Standard Webhooks envelope)."""

    type: Annotated[EventType, _doc("What happened.")]
    timestamp: Annotated[
        _AwareDatetime, _doc("When the event was created, RFC 3339 UTC, whole seconds.")
    ]
    data: EventData


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``Event`` (the body of every delivery), generated from the Structs."""
    schema: dict[str, Any] = msgspec.json.schema(Event)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"ocr-relay event, schema version {SCHEMA_VERSION}"
    return schema


def render_event_json_schema() -> bytes:
    """``event_json_schema()`` as the committed ``docs/event-schema.json`` spells it."""
    return msgspec.json.format(msgspec.json.encode(event_json_schema()), indent=2) + b"\n"
