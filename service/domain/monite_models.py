"""msgspec models of Monite's OCR task payloads (API version 2024-05-25).

Tolerant where Monite may evolve: unknown fields are ignored, and enum-like values (status,
document type, currency, country) are plain strings so a value Monite adds later still decodes.
Strict where a misread would corrupt data: a field of the wrong JSON type fails the whole decode
with ``msgspec.ValidationError``, which the worker reports as an ``invalid_payload`` failure.

Amounts, rates and quantities stay the text of their JSON number (``Number``), so a number never
passes through a binary float, and ``normalize`` reads each one exactly once. Dates stay strings:
Monite documents ISO dates, but OCR output is not always what is documented, and ``normalize``
decides what is readable.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter
from typing import Annotated, Final, TypeVar

import msgspec

# A 100-page PDF yields a few thousand lines at most; the cap keeps a hostile payload from turning
# into millions of objects to normalize.
MAX_LINE_ITEMS: Final = 10_000
# Monite's task bodies are a few KiB; anything this large is not an OCR result.
MAX_TASK_BYTES: Final = 8 * 1024 * 1024
# The longest text a printed document field can hold (a line description is a few hundred
# characters); longer is not OCR output, and would be copied into every event.
MAX_TEXT_CHARS: Final = 10_000
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]

KNOWN_STATUSES: Final = frozenset({"processing", "success", "error"})
_TERMINAL_STATUSES: Final = frozenset({"success", "error"})


Number = msgspec.Raw
"""A JSON number exactly as received, ``null`` when absent; ``decode_task`` rejects other types."""
_NULL: Final = b"null"
# msgspec.Raw takes no union with None: an absent field reads as a JSON null instead.
_ABSENT: Final = msgspec.Raw(_NULL)


class _Model(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every Monite model: immutable, keyword-only, and free of reference cycles."""


class OcrAddress(_Model, frozen=True):
    """``OCRAddressDetails``; every field optional."""

    street_and_number: Text | None = None
    city: Text | None = None
    postal_code: Text | None = None
    state: Text | None = None
    country: Text | None = None


class OcrBankDetails(_Model, frozen=True):
    """``OCRBankDetails``; every field optional."""

    iban: Text | None = None
    swift_bic: Text | None = None
    bank_account_number: Text | None = None


class OcrCounterpart(_Model, frozen=True):
    """``OCRCounterpartDetails``: the sender or recipient printed on a document."""

    name: Text | None = None
    email: Text | None = None
    tax_number: Text | None = None
    vat_number: Text | None = None
    # Monite marks both as required but always-present-and-empty; None tolerates their absence.
    address: OcrAddress | None = None
    bank_account: OcrBankDetails | None = None


class OcrLineItem(_Model, frozen=True):
    """``OCRLineItem``; every field optional."""

    name: Text | None = None
    description: Text | None = None
    quantity: Number = _ABSENT
    unit: Text | None = None
    unit_price: Number = _ABSENT
    subtotal: Number = _ABSENT
    tax_rate: Number = _ABSENT
    tax_amount: Number = _ABSENT
    total_amount: Number = _ABSENT
    line_reference: Text | None = None


class OcrReceiptLineItem(OcrLineItem, frozen=True):
    """``OCRReceiptLineItem``: a line item that may carry a discount."""

    discount_amount: Number = _ABSENT


_LineItems = Annotated[list[OcrLineItem], msgspec.Meta(max_length=MAX_LINE_ITEMS)]
_ReceiptLineItems = Annotated[list[OcrReceiptLineItem], msgspec.Meta(max_length=MAX_LINE_ITEMS)]


class OcrInvoice(_Model, frozen=True, tag_field="type", tag="invoice"):
    """``OCRInvoice``: ``recognized_data`` of an invoice."""

    document_number: Text | None = None
    issue_date: Text | None = None
    due_date: Text | None = None
    payment_terms: Text | None = None
    currency: Text | None = None
    subtotal: Number = _ABSENT
    tax_rate: Number = _ABSENT
    tax_amount: Number = _ABSENT
    total_amount: Number = _ABSENT
    amount_paid: Number = _ABSENT
    sender: OcrCounterpart | None = None
    recipient: OcrCounterpart | None = None
    line_items: _LineItems | None = None


class OcrCreditNote(_Model, frozen=True, tag_field="type", tag="credit_note"):
    """``OCRCreditNote``: ``recognized_data`` of a credit note."""

    document_number: Text | None = None
    original_invoice_number: Text | None = None
    issue_date: Text | None = None
    currency: Text | None = None
    subtotal: Number = _ABSENT
    tax_rate: Number = _ABSENT
    tax_amount: Number = _ABSENT
    total_amount: Number = _ABSENT
    sender: OcrCounterpart | None = None
    recipient: OcrCounterpart | None = None
    line_items: _LineItems | None = None


class OcrReceipt(_Model, frozen=True, tag_field="type", tag="receipt"):
    """``OCRReceipt``: ``recognized_data`` of a receipt (no recipient; a date-time, not a date)."""

    document_number: Text | None = None
    issued_at: Text | None = None
    currency: Text | None = None
    subtotal: Number = _ABSENT
    tax_rate: Number = _ABSENT
    tax_amount: Number = _ABSENT
    tax_type: Text | None = None
    total_amount: Number = _ABSENT
    discount: Number = _ABSENT
    sender: OcrCounterpart | None = None
    line_items: _ReceiptLineItems | None = None


OcrRecognizedData = OcrInvoice | OcrCreditNote | OcrReceipt


class OcrTaskError(_Model, frozen=True):
    """Why a task ended ``error``. Monite's schema has no such field; the simulator sends one (and
    should Monite ever add it, its reason reaches the ``ocr.failed`` event too)."""

    message: Text | None = None


class OcrTask(_Model, frozen=True):
    """``OcrTaskResponseSchema``: one OCR task as ``GET /ocr_tasks/{id}`` returns it."""

    id: str
    created_at: datetime
    updated_at: datetime
    status: str
    document_type: str | None = None
    recognized_data: OcrRecognizedData | None = None
    error: OcrTaskError | None = None


class OcrTaskPage(_Model, frozen=True):
    """``OCRTasksPaginationResponse``: one page of ``GET /ocr_tasks``."""

    data: list[OcrTask]
    prev_pagination_token: str | None = None
    next_pagination_token: str | None = None


class _RecognizedDataOnly(msgspec.Struct, gc=False):
    recognized_data: msgspec.Raw = _ABSENT


_T = TypeVar("_T")

# Bytes of JSON numbers and of null, and of no other JSON value: every string, true, false, object
# and array has a byte outside this set, so a text of number fields with none is only numbers.
_NUMBER_OR_NULL_BYTES: Final = b"0123456789-+.eEnul"
_JSON_TYPE_OF_FIRST_BYTE: Final = {b'"': "str", b"t": "bool", b"f": "bool", b"{": "object"}
_NUMBER_FIELDS: Final = {
    model: tuple(f.name for f in msgspec.structs.fields(model) if f.type is Number)
    for model in (OcrInvoice, OcrCreditNote, OcrReceipt, OcrLineItem, OcrReceiptLineItem)
}
_NUMBERS_OF: Final = {model: attrgetter(*names) for model, names in _NUMBER_FIELDS.items()}

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
    """Decode one OCR task; raises ``msgspec.DecodeError``/``ValidationError`` if invalid.

    Its timestamps are always timezone-aware: one sent without an offset is UTC.
    """
    task = _aware(_decode(_task_decoder, body))
    _check_numbers(task.recognized_data, "$.recognized_data")
    return task


def decode_page(body: bytes) -> OcrTaskPage:
    """Decode one page of the task list; raises like ``decode_task``."""
    page = _decode(_page_decoder, body)
    page.data[:] = map(_aware, page.data)
    for index, task in enumerate(page.data):
        _check_numbers(task.recognized_data, f"$.data[{index}].recognized_data")
    return page


def _aware(task: OcrTask) -> OcrTask:
    # Monite documents its timestamps as UTC, but has been seen sending them without an offset;
    # a naive datetime would make every later comparison with an aware one raise.
    if task.created_at.tzinfo is not None and task.updated_at.tzinfo is not None:
        return task
    return msgspec.structs.replace(
        task,
        created_at=task.created_at.replace(tzinfo=task.created_at.tzinfo or UTC),
        updated_at=task.updated_at.replace(tzinfo=task.updated_at.tzinfo or UTC),
    )


def _check_numbers(data: OcrRecognizedData | None, path: str) -> None:
    """The type check msgspec leaves to us for ``Number`` fields, all at once (the hot path)."""
    if data is None:
        return
    numbers: list[Number] = list(_NUMBERS_OF[type(data)](data))
    if data.line_items:
        line_numbers = _NUMBERS_OF[type(data.line_items[0])]
        numbers.extend(chain.from_iterable(map(line_numbers, data.line_items)))
    if b"".join(numbers).translate(None, _NUMBER_OR_NULL_BYTES):
        raise msgspec.ValidationError(_wrong_type(data, path))


def _wrong_type(data: OcrRecognizedData, path: str) -> str:
    """The message of the first ``Number`` field that holds no number, in msgspec's words."""
    for field, text in _number_texts(data):
        first = text[:1]
        if text != _NULL and first not in b"-0123456789":
            kind = _JSON_TYPE_OF_FIRST_BYTE.get(first, "array")
            return f"Expected `number | null`, got `{kind}` - at `{path}{field}`"
    raise AssertionError("no field without a number")  # only called after a failed check


def _number_texts(data: OcrRecognizedData) -> Iterable[tuple[str, bytes]]:
    for name in _NUMBER_FIELDS[type(data)]:
        yield f".{name}", bytes(getattr(data, name))
    for index, item in enumerate(data.line_items or ()):
        for name in _NUMBER_FIELDS[type(item)]:
            yield f".line_items[{index}].{name}", bytes(getattr(item, name))


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
