"""Monite's ``recognized_data`` → ``NormalizedDocument``: pure, no I/O.

Missing values become ``null``, never guesses; values that cannot be read, and amounts that do not
add up, become ``warnings`` for a human to check. Sum checks allow one minor unit of rounding per
summed value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Final

import msgspec

from service.domain.dates import parse_date
from service.domain.identifiers import bic_is_valid, iban_is_valid, is_known_country
from service.domain.money import (
    Denomination,
    UnreadableNumberError,
    Value,
    decimal_text,
    denomination,
    read_text,
)
from service.domain.monite_models import (
    Number,
    OcrAddress,
    OcrBankDetails,
    OcrCounterpart,
    OcrCreditNote,
    OcrInvoice,
    OcrLineItem,
    OcrReceipt,
    OcrTask,
    raw_recognized_data,
)
from service.domain.schema import (
    SCHEMA_VERSION,
    Address,
    BankAccount,
    CreditNoteDocument,
    DocumentWarning,
    InvoiceDocument,
    LineItem,
    Money,
    NormalizedDocument,
    Party,
    ReceiptDocument,
    Source,
    WarningCode,
)

_NULL: Final = b"null"
# A line item's amounts: the Monite field, and the normalized field (that warnings name).
_LINE_AMOUNTS: Final = (
    ("unit_price", "unit_price"),
    ("subtotal", "subtotal"),
    ("tax_amount", "tax_amount"),
    ("total_amount", "total"),
)
_HUNDRED: Final = Decimal(100)
_SHOWN_CHARS: Final = 40


class NotRecognizedError(ValueError):
    """The task has no recognized document to normalize (not ``success``, or no data)."""


class NormalizeContext(msgspec.Struct, frozen=True, kw_only=True):
    """What normalization needs besides the task: the watch's ids and the raw-data choice.

    ``body`` is the task JSON exactly as received from Monite; it is required with ``include_raw``
    so that ``raw`` carries Monite's bytes, not a re-encoding of what this service understood.
    """

    task_id: str
    entity_id: str | None = None
    include_raw: bool = False
    body: bytes | None = None

    def __post_init__(self) -> None:
        if self.include_raw and self.body is None:
            raise ValueError("include_raw needs the task body as received")


def normalize(task: OcrTask, context: NormalizeContext) -> NormalizedDocument:
    """Normalize a successful OCR task; raises ``NotRecognizedError`` if it has no document."""
    data = task.recognized_data
    if task.status != "success":
        raise NotRecognizedError(f"OCR task status is {_shown(task.status)}, not 'success'")
    if data is None:
        raise NotRecognizedError("OCR task has status 'success' but no recognized_data")
    source = Source(
        provider="monite",
        task_id=context.task_id,
        entity_id=context.entity_id,
        recognized_at=_utc(task.updated_at),
    )
    raw: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    if context.include_raw and context.body is not None:
        raw = raw_recognized_data(context.body) or msgspec.UNSET
    reader = _Reader(data.currency)
    if isinstance(data, OcrInvoice):
        return reader.invoice(data, source, raw)
    if isinstance(data, OcrCreditNote):
        return reader.credit_note(data, source, raw)
    return reader.receipt(data, source, raw)


def _utc(moment: datetime) -> datetime:
    # Monite documents its timestamps as UTC, so a timestamp without offset is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(value: str | None) -> str | None:
    return (value.strip() or None) if value else None


def _compact(value: str | None) -> str | None:
    return "".join(value.split()).upper() or None if value else None


class _Reader:
    """Reads one recognized document, collecting the warnings on the way."""

    def __init__(self, currency: str | None) -> None:
        self.warnings: list[DocumentWarning] = []
        self.currency = _compact(currency)
        self.denomination: Denomination = denomination(self.currency)
        self.amounts_seen = False
        if self.currency is not None and self.denomination.exponent is None:
            self._warn(
                "currency_unknown",
                "currency",
                f"{_shown(self.currency)} is not an ISO 4217 currency with minor units; "
                "amounts are kept as recognized",
            )

    # -- documents ---------------------------------------------------------------------------

    def invoice(
        self, data: OcrInvoice, source: Source, raw: msgspec.Raw | msgspec.UnsetType
    ) -> InvoiceDocument:
        subtotal, tax, total = self._totals(data.subtotal, data.tax_amount, data.total_amount)
        paid = self._amount(data.amount_paid, "amount_paid")
        due = None
        if total is not None and paid is not None:
            due = self.denomination.difference(total, paid)
            value = self.denomination.value
            if value(paid) - value(total) > self.denomination.minor_unit:
                self._warn(
                    "paid_exceeds_total",
                    "amount_paid",
                    f"paid {paid.amount} exceeds total {total.amount}",
                )
        issue_date = self._date(data.issue_date, "issue_date")
        due_date = self._date(data.due_date, "due_date")
        if issue_date is not None and due_date is not None and due_date < issue_date:
            self._warn(
                "due_before_issue", "due_date", f"due {due_date} is before issue {issue_date}"
            )
        line_items = self._line_items(data.line_items or (), subtotal, tax, total, discount=None)
        return InvoiceDocument(
            schema_version=SCHEMA_VERSION,
            document_number=_text(data.document_number),
            issue_date=_iso(issue_date),
            due_date=_iso(due_date),
            payment_terms=_text(data.payment_terms),
            currency=self.currency,
            subtotal=subtotal,
            tax=tax,
            total=total,
            amount_paid=paid,
            amount_due=due,
            tax_rate=self._rate(data.tax_rate, "tax_rate"),
            seller=self._party(data.sender, "seller"),
            buyer=self._party(data.recipient, "buyer"),
            line_items=line_items,
            warnings=self._finish(),
            source=source,
            raw=raw,
        )

    def credit_note(
        self, data: OcrCreditNote, source: Source, raw: msgspec.Raw | msgspec.UnsetType
    ) -> CreditNoteDocument:
        subtotal, tax, total = self._totals(data.subtotal, data.tax_amount, data.total_amount)
        line_items = self._line_items(data.line_items or (), subtotal, tax, total, discount=None)
        return CreditNoteDocument(
            schema_version=SCHEMA_VERSION,
            document_number=_text(data.document_number),
            original_invoice_number=_text(data.original_invoice_number),
            issue_date=_iso(self._date(data.issue_date, "issue_date")),
            currency=self.currency,
            subtotal=subtotal,
            tax=tax,
            total=total,
            tax_rate=self._rate(data.tax_rate, "tax_rate"),
            seller=self._party(data.sender, "seller"),
            buyer=self._party(data.recipient, "buyer"),
            line_items=line_items,
            warnings=self._finish(),
            source=source,
            raw=raw,
        )

    def receipt(
        self, data: OcrReceipt, source: Source, raw: msgspec.Raw | msgspec.UnsetType
    ) -> ReceiptDocument:
        subtotal, tax, total = self._totals(data.subtotal, data.tax_amount, data.total_amount)
        discount = self._amount(data.discount, "discount")
        line_items = self._line_items(data.line_items or (), subtotal, tax, total, discount)
        issued_at, issue_date = self._issued_at(data.issued_at)
        return ReceiptDocument(
            schema_version=SCHEMA_VERSION,
            document_number=_text(data.document_number),
            issue_date=_iso(issue_date),
            issued_at=issued_at,
            currency=self.currency,
            subtotal=subtotal,
            tax=tax,
            total=total,
            discount=discount,
            tax_rate=self._rate(data.tax_rate, "tax_rate"),
            seller=self._party(data.sender, "seller"),
            line_items=line_items,
            warnings=self._finish(),
            source=source,
            raw=raw,
        )

    # -- numbers -----------------------------------------------------------------------------

    def _amount(self, number: Number, field: str) -> Money | None:
        """An amount rounded to the currency; an unreadable one is ``None`` with a warning."""
        text = bytes(number)
        try:
            money = self.denomination.money(text)
        except UnreadableNumberError:
            self._unreadable(text, field)
            return None
        if money is not None:
            self.amounts_seen = True
        return money

    def _unreadable(self, text: bytes, field: str) -> None:
        self._warn("number_out_of_range", field, f"{_cut(text.decode())} is not a readable amount")

    def _totals(
        self, subtotal: Number, tax: Number, total: Number
    ) -> tuple[Money | None, Money | None, Money | None]:
        return (
            self._amount(subtotal, "subtotal"),
            self._amount(tax, "tax"),
            self._amount(total, "total"),
        )

    def _quantity(self, number: Number, line: int) -> str | None:
        text = bytes(number)
        if text == _NULL:
            return None
        reading, _ = _reading(text)
        if reading is None:
            self._warn(
                "number_out_of_range",
                _path("quantity", line),
                f"{_cut(text.decode())} is not a number",
            )
        return reading

    def _rate(self, number: Number, field: str, line: int | None = None) -> str | None:
        text = bytes(number)
        if text == _NULL:
            return None
        reading, percentage = _reading(text)
        if reading is None:
            self._warn(
                "number_out_of_range", _path(field, line), f"{_cut(text.decode())} is not a number"
            )
        elif not percentage:
            self._warn(
                "tax_rate_suspicious",
                _path(field, line),
                f"{reading} is not a plausible percentage",
            )
        return reading

    def _line_items(
        self,
        items: Sequence[OcrLineItem],
        subtotal: Money | None,
        tax: Money | None,
        total: Money | None,
        discount: Money | None,
    ) -> list[LineItem]:
        """The normalized lines; checks them and the document totals against each other."""
        lines: list[LineItem] = []
        money = self.denomination.money  # bound once: this loop is the hot path
        for index, item in enumerate(items):
            try:
                lines.append(self._line(index, item, money))
            except UnreadableNumberError:
                line = self._line(index, item, self._readable)
                for source, field in _LINE_AMOUNTS:
                    text = bytes(getattr(item, source))
                    if getattr(line, field) is None and text != _NULL:
                        self._unreadable(text, _path(field, index))
                lines.append(line)
        if lines:
            if self.currency is None and not self.amounts_seen:
                self.amounts_seen = any(
                    line.unit_price or line.subtotal or line.tax_amount or line.total
                    for line in lines
                )
            self._check_lines(lines, subtotal, total, discount)
        self._check_totals(subtotal, tax, total, discount)
        return lines

    def _line(
        self, index: int, item: OcrLineItem, money: Callable[[bytes], Money | None]
    ) -> LineItem:
        """One line; ``money`` reads its amounts (and may raise ``UnreadableNumberError``)."""
        # Amounts first: if one raises, no warning of this line has been recorded yet.
        unit_price = money(bytes(item.unit_price))
        subtotal = money(bytes(item.subtotal))
        tax_amount = money(bytes(item.tax_amount))
        total = money(bytes(item.total_amount))
        return LineItem(
            position=index + 1,
            name=_text(item.name),
            description=_text(item.description),
            quantity=self._quantity(item.quantity, index),
            unit=_text(item.unit),
            unit_price=unit_price,
            subtotal=subtotal,
            tax_rate=self._rate(item.tax_rate, "tax_rate", index),
            tax_amount=tax_amount,
            total=total,
            reference=_text(item.line_reference),
        )

    def _readable(self, text: bytes) -> Money | None:
        """``Money`` of a number, ``None`` if unreadable (the caller warns)."""
        try:
            return self.denomination.money(text)
        except UnreadableNumberError:
            return None

    def _check_lines(
        self,
        lines: list[LineItem],
        subtotal: Money | None,
        total: Money | None,
        discount: Money | None,
    ) -> None:
        """Net lines must sum to the subtotal; lines with only gross totals, to the total."""
        tolerance = self.denomination.minor_unit * len(lines)
        line_subtotals = self.denomination.total([line.subtotal for line in lines])
        if line_subtotals is not None and subtotal is not None:
            if not self._close(subtotal, tolerance, line_subtotals, None):
                self._warn(
                    "line_items_mismatch",
                    "subtotal",
                    f"line items sum to {self.denomination.text(line_subtotals)}, "
                    f"subtotal is {subtotal.amount}",
                )
            return
        line_totals = self.denomination.total([line.total for line in lines])
        if (
            line_totals is not None
            and total is not None
            and not self._close(total, tolerance, line_totals, discount)
        ):
            self._warn(
                "line_items_mismatch",
                "total",
                f"line item totals sum to {self.denomination.text(line_totals)}, "
                f"total is {total.amount}",
            )

    def _check_totals(
        self,
        subtotal: Money | None,
        tax: Money | None,
        total: Money | None,
        discount: Money | None,
    ) -> None:
        if subtotal is None or tax is None or total is None:
            return
        value = self.denomination.value
        tolerance = self.denomination.minor_unit * 2
        if not self._close(total, tolerance, value(subtotal) + value(tax), discount):
            self._warn(
                "totals_mismatch",
                "total",
                f"subtotal {subtotal.amount} + tax {tax.amount} is not {total.amount}",
            )

    def _close(self, target: Money, tolerance: Value, value: Value, discount: Money | None) -> bool:
        """Whether ``value`` is ``target``, before or after a discount (receipts print either)."""
        difference = value - self.denomination.value(target)
        if -tolerance <= difference <= tolerance:
            return True
        if discount is None:
            return False
        difference -= self.denomination.value(discount)
        return -tolerance <= difference <= tolerance

    # -- dates -------------------------------------------------------------------------------

    def _date(self, text: str | None, field: str) -> date | None:
        text = _text(text)
        if text is None:
            return None
        day, problem = parse_date(text)
        if problem == "date_ambiguous":
            self._warn(problem, field, f"{_shown(text)} reads as two different dates")
        elif problem is not None:
            self._warn(problem, field, f"{_shown(text)} is not a readable date")
        return day

    def _issued_at(self, text: str | None) -> tuple[datetime | None, date | None]:
        """A receipt's time of issue and its local date; a date alone leaves the time null.

        A time without an offset stays without one: it is the printed local time, and the zone
        of the shop is unknown.
        """
        text = _text(text)
        if text is None or len(text) <= len("YYYY-MM-DD"):
            return None, self._date(text, "issued_at")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None, self._date(text, "issued_at")
        return moment, moment.date()

    # -- parties -----------------------------------------------------------------------------

    def _party(self, counterpart: OcrCounterpart | None, path: str) -> Party | None:
        if counterpart is None:
            return None
        party = Party(
            name=_text(counterpart.name),
            email=_text(counterpart.email),
            tax_number=_text(counterpart.tax_number),
            vat_number=_text(counterpart.vat_number),
            address=self._address(counterpart.address, f"{path}.address"),
            bank_account=self._bank_account(counterpart.bank_account, f"{path}.bank_account"),
        )
        return None if party == _EMPTY_PARTY else party

    def _address(self, address: OcrAddress | None, path: str) -> Address | None:
        if address is None:
            return None
        country = _compact(address.country)
        if country is not None and not is_known_country(country):
            self._warn(
                "country_unknown", f"{path}.country", f"{_shown(country)} is not a known country"
            )
        result = Address(
            street=_text(address.street_and_number),
            city=_text(address.city),
            postal_code=_text(address.postal_code),
            state=_text(address.state),
            country=country,
        )
        return None if result == _EMPTY_ADDRESS else result

    def _bank_account(self, bank: OcrBankDetails | None, path: str) -> BankAccount | None:
        if bank is None:
            return None
        iban = _compact(bank.iban)
        bic = _compact(bank.swift_bic)
        iban_valid = None if iban is None else iban_is_valid(iban)
        if iban_valid is False:
            self._warn("iban_invalid", f"{path}.iban", "IBAN fails the length or mod-97 check")
        if bic is not None and not bic_is_valid(bic):
            self._warn("bic_invalid", f"{path}.bic", "BIC is malformed or has an unknown country")
        account_number = _text(bank.bank_account_number)
        if iban is None and bic is None and account_number is None:
            return None
        return BankAccount(iban=iban, iban_valid=iban_valid, bic=bic, account_number=account_number)

    # -- warnings ----------------------------------------------------------------------------

    def _warn(self, code: WarningCode, field: str | None, message: str) -> None:
        self.warnings.append(DocumentWarning(code=code, field=field, message=message))

    def _finish(self) -> list[DocumentWarning]:
        if self.currency is None and self.amounts_seen:
            self._warn("currency_missing", "currency", "amounts were recognized without a currency")
        return self.warnings


_EMPTY_PARTY: Final = Party(
    name=None, email=None, tax_number=None, vat_number=None, address=None, bank_account=None
)
_EMPTY_ADDRESS: Final = Address(street=None, city=None, postal_code=None, state=None, country=None)


def _shown(value: str) -> str:
    """A recognized text quoted in a message, cut short."""
    return _cut(repr(value))


def _cut(text: str) -> str:
    """A recognized value in a message, cut short: OCR text may be arbitrarily long."""
    return text if len(text) <= _SHOWN_CHARS else f"{text[: _SHOWN_CHARS - 1]}…"


def _path(field: str, line: int | None) -> str:
    return field if line is None else f"line_items[{line}].{field}"


@functools.lru_cache(maxsize=1024)
def _reading(text: bytes) -> tuple[str | None, bool]:
    """A rate's or quantity's plain text (``None`` if unreadable), and whether it is a percentage.

    Memoized: documents repeat the same few rates and quantities.
    """
    number = read_text(text)
    if number is None:
        return None, False
    return decimal_text(number), number == 0 or 1 <= number <= _HUNDRED


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()
