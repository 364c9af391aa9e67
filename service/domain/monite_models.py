"""msgspec models of Monite's OCR task payloads (API version 2024-05-25).

Tolerant where Monite may evolve: unknown fields are ignored, and enum-like values (status,
document type, currency, country) are plain strings so a value Monite adds later still decodes.
Strict where a misread would corrupt data: a field of the wrong JSON type fails the whole decode
with ``msgspec.ValidationError``, which the worker reports as an ``invalid_payload`` failure.

Amounts, rates and quantities decode straight from the JSON text into ``Decimal``, so a number never
passes through a binary float. Dates stay strings: Monite documents ISO dates, but OCR output is not
always what is documented, and ``normalize`` decides what is readable.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Final, TypeVar

import msgspec

# A 100-page PDF yields a few thousand lines at most; the cap keeps a hostile payload from turning
# into millions of objects to normalize.
MAX_LINE_ITEMS: Final = 10_000
# Monite's task bodies are a few KiB; anything this large is not an OCR result.
MAX_TASK_BYTES: Final = 8 * 1024 * 1024

KNOWN_STATUSES: Final = frozenset({"processing", "success", "error"})
_TERMINAL_STATUSES: Final = frozenset({"success", "error"})


class _Model(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every Monite model: immutable, keyword-only, and free of reference cycles."""


class OcrAddress(_Model, frozen=True):
    """``OCRAddressDetails``; every field optional."""

    street_and_number: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = None


class OcrBankDetails(_Model, frozen=True):
    """``OCRBankDetails``; every field optional."""

    iban: str | None = None
    swift_bic: str | None = None
    bank_account_number: str | None = None


class OcrCounterpart(_Model, frozen=True):
    """``OCRCounterpartDetails``: the sender or recipient printed on a document."""

    name: str | None = None
    email: str | None = None
    tax_number: str | None = None
    vat_number: str | None = None
    # Monite marks both as required but always-present-and-empty; None tolerates their absence.
    address: OcrAddress | None = None
    bank_account: OcrBankDetails | None = None


class OcrLineItem(_Model, frozen=True):
    """``OCRLineItem``; every field optional."""

    name: str | None = None
    description: str | None = None
    quantity: Decimal | None = None
    unit: str | None = None
    unit_price: Decimal | None = None
    subtotal: Decimal | None = None
    tax_rate: Decimal | None = None
    tax_amount: Decimal | None = None
    total_amount: Decimal | None = None
    line_reference: str | None = None


class OcrReceiptLineItem(OcrLineItem, frozen=True):
    """``OCRReceiptLineItem``: a line item that may carry a discount."""

    discount_amount: Decimal | None = None


_LineItems = Annotated[list[OcrLineItem], msgspec.Meta(max_length=MAX_LINE_ITEMS)]
_ReceiptLineItems = Annotated[list[OcrReceiptLineItem], msgspec.Meta(max_length=MAX_LINE_ITEMS)]


class OcrInvoice(_Model, frozen=True, tag_field="type", tag="invoice"):
    """``OCRInvoice``: ``recognized_data`` of an invoice."""

    document_number: str | None = None
    issue_date: str | None = None
    due_date: str | None = None
    payment_terms: str | None = None
    currency: str | None = None
    subtotal: Decimal | None = None
    tax_rate: Decimal | None = None
    tax_amount: Decimal | None = None
    total_amount: Decimal | None = None
    amount_paid: Decimal | None = None
    sender: OcrCounterpart | None = None
    recipient: OcrCounterpart | None = None
    line_items: _LineItems | None = None


class OcrCreditNote(_Model, frozen=True, tag_field="type", tag="credit_note"):
    """``OCRCreditNote``: ``recognized_data`` of a credit note."""

    document_number: str | None = None
    original_invoice_number: str | None = None
    issue_date: str | None = None
    currency: str | None = None
    subtotal: Decimal | None = None
    tax_rate: Decimal | None = None
    tax_amount: Decimal | None = None
    total_amount: Decimal | None = None
    sender: OcrCounterpart | None = None
    recipient: OcrCounterpart | None = None
    line_items: _LineItems | None = None


class OcrReceipt(_Model, frozen=True, tag_field="type", tag="receipt"):
    """``OCRReceipt``: ``recognized_data`` of a receipt (no recipient; a date-time, not a date)."""

    document_number: str | None = None
    issued_at: str | None = None
    currency: str | None = None
    subtotal: Decimal | None = None
    tax_rate: Decimal | None = None
    tax_amount: Decimal | None = None
    tax_type: str | None = None
    total_amount: Decimal | None = None
    discount: Decimal | None = None
    sender: OcrCounterpart | None = None
    line_items: _ReceiptLineItems | None = None


OcrRecognizedData = OcrInvoice | OcrCreditNote | OcrReceipt


class OcrTask(_Model, frozen=True):
    """``OcrTaskResponseSchema``: one OCR task as ``GET /ocr_tasks/{id}`` returns it."""

    id: str
    created_at: datetime
    updated_at: datetime
    status: str
    document_type: str | None = None
    recognized_data: OcrRecognizedData | None = None


class OcrTaskPage(_Model, frozen=True):
    """``OCRTasksPaginationResponse``: one page of ``GET /ocr_tasks``."""

    data: list[OcrTask]
    prev_pagination_token: str | None = None
    next_pagination_token: str | None = None


_NULL: Final = b"null"


class _RecognizedDataOnly(msgspec.Struct, gc=False):
    # msgspec.Raw takes no union with None: an absent field reads as a JSON null instead.
    recognized_data: msgspec.Raw = msgspec.Raw(_NULL)


_T = TypeVar("_T")

_task_decoder: Final = msgspec.json.Decoder(OcrTask)
_page_decoder: Final = msgspec.json.Decoder(OcrTaskPage)
_raw_decoder: Final = msgspec.json.Decoder(_RecognizedDataOnly)


def _decode(decoder: msgspec.json.Decoder[_T], body: bytes) -> _T:
    if len(body) > MAX_TASK_BYTES:
        raise msgspec.DecodeError(f"payload of {len(body)} bytes exceeds {MAX_TASK_BYTES} bytes")
    try:
        return decoder.decode(body)
    except RecursionError:
        # msgspec bounds its recursion by Python's limit; such nesting is malformed input.
        raise msgspec.DecodeError("payload is nested too deeply") from None


def decode_task(body: bytes) -> OcrTask:
    """Decode one OCR task; raises ``msgspec.DecodeError``/``ValidationError`` if invalid."""
    return _decode(_task_decoder, body)


def decode_page(body: bytes) -> OcrTaskPage:
    """Decode one page of the task list; raises like ``decode_task``."""
    return _decode(_page_decoder, body)


def raw_recognized_data(body: bytes) -> msgspec.Raw | None:
    """The ``recognized_data`` of a task body exactly as received (bytes untouched), or ``None``."""
    raw = _decode(_raw_decoder, body).recognized_data
    return None if bytes(raw) == _NULL else raw


def is_terminal(status: str) -> bool:
    """Whether a task status is final; an unknown one is not (Monite may add new ones)."""
    return status in _TERMINAL_STATUSES


def is_known_status(status: str) -> bool:
    """Whether Monite documents this task status (an unknown one deserves a log line)."""
    return status in KNOWN_STATUSES
