"""Monite's ``recognized_data`` → ``NormalizedDocument``: pure, no I/O.

Missing values become ``null``, never guesses; values that cannot be read, and amounts that do not
add up, become ``warnings`` for a human to check. Sum checks allow one minor unit of rounding per
summed value.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Final

import msgspec
import pycountry
import schwifty

from service.domain.money import Denomination, decimal_text, denomination, read_number
from service.domain.monite_models import (
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

# Monite's AllowedCountries adds these non-ISO codes to ISO 3166-1 alpha-2.
_MONITE_EXTRA_COUNTRIES: Final = frozenset({"IC", "EA", "AN"})
_COUNTRIES: Final = frozenset(c.alpha_2 for c in pycountry.countries) | _MONITE_EXTRA_COUNTRIES

_HUNDRED: Final = Decimal(100)
_SHOWN_CHARS: Final = 40
_MONTHS: Final = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_YEAR_FIRST: Final = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_DAY_DOT_MONTH: Final = re.compile(r"(\d{1,2})\.\s?(\d{1,2})\.\s?(\d{4})")
_DAY_OR_MONTH_FIRST: Final = re.compile(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})")
_DAY_NAMED_MONTH: Final = re.compile(r"(\d{1,2})\.?[\s-]+([A-Za-z]{3,9})\.?,?[\s-]+(\d{4})")
_NAMED_MONTH_DAY: Final = re.compile(r"([A-Za-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})")


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


@functools.lru_cache(maxsize=4096)
def iban_is_valid(iban: str) -> bool:
    """Country length and mod-97 check of a compact, upper-case IBAN (memoized: sellers recur)."""
    try:
        schwifty.IBAN(iban)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def bic_is_valid(bic: str) -> bool:
    """Structure and country check of a compact, upper-case BIC (memoized like IBANs)."""
    try:
        schwifty.BIC(bic)
    except ValueError:
        return False
    return True


def parse_date(text: str) -> tuple[date | None, WarningCode | None]:
    """A calendar date in one of the common printed forms, or ``None`` with the reason.

    ``YYYY-MM-DD`` (and ``/`` or ``.`` separators), ``DD.MM.YYYY``, ``DD/MM/YYYY`` or ``MM/DD/YYYY``
    when only one reading is a valid date, and English month names. ``03/04/2026`` could be either
    month first: it is ``date_ambiguous``, never a guess.
    """
    text = text.strip()
    if len(text) >= 10 and text[4] == "-" and text[7] == "-" and text[10:11] in ("", "T", " "):
        try:
            return date.fromisoformat(text[:10]), None
        except ValueError:
            return None, "date_unparseable"
    if match := _YEAR_FIRST.fullmatch(text):
        year, month, day = (int(g) for g in match.groups())
        return _calendar(year, month, day)
    if match := _DAY_DOT_MONTH.fullmatch(text):
        day, month, year = (int(g) for g in match.groups())
        return _calendar(year, month, day)
    if match := _DAY_OR_MONTH_FIRST.fullmatch(text):
        first, second, year = (int(g) for g in match.groups())
        readings = {(m, d) for m, d in ((second, first), (first, second)) if m <= 12}
        if len(readings) > 1:
            return None, "date_ambiguous"
        return _calendar(year, *readings.pop()) if readings else (None, "date_unparseable")
    if match := _DAY_NAMED_MONTH.fullmatch(text):
        day_text, month_name, year_text = match.groups()
        return _named(year_text, month_name, day_text)
    if match := _NAMED_MONTH_DAY.fullmatch(text):
        month_name, day_text, year_text = match.groups()
        return _named(year_text, month_name, day_text)
    return None, "date_unparseable"


def _named(year: str, month_name: str, day: str) -> tuple[date | None, WarningCode | None]:
    month = _MONTHS.get(month_name.lower())
    return (None, "date_unparseable") if month is None else _calendar(int(year), month, int(day))


def _calendar(year: int, month: int, day: int) -> tuple[date | None, WarningCode | None]:
    try:
        return date(year, month, day), None
    except ValueError:
        return None, "date_unparseable"


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
        paid = self._value(data.amount_paid, "amount_paid")
        due = None if total is None or paid is None else self.denomination.amount(total - paid)
        if total is not None and paid is not None and paid - total > self.denomination.minor_unit:
            self._warn("paid_exceeds_total", "amount_paid", f"paid {paid} exceeds total {total}")
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
            subtotal=self._money(subtotal),
            tax=self._money(tax),
            total=self._money(total),
            amount_paid=self._money(paid),
            amount_due=self._money(due),
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
            subtotal=self._money(subtotal),
            tax=self._money(tax),
            total=self._money(total),
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
        discount = self._value(data.discount, "discount")
        line_items = self._line_items(data.line_items or (), subtotal, tax, total, discount)
        issued_at, issue_date = self._issued_at(data.issued_at)
        return ReceiptDocument(
            schema_version=SCHEMA_VERSION,
            document_number=_text(data.document_number),
            issue_date=_iso(issue_date),
            issued_at=issued_at,
            currency=self.currency,
            subtotal=self._money(subtotal),
            tax=self._money(tax),
            total=self._money(total),
            discount=self._money(discount),
            tax_rate=self._rate(data.tax_rate, "tax_rate"),
            seller=self._party(data.sender, "seller"),
            line_items=line_items,
            warnings=self._finish(),
            source=source,
            raw=raw,
        )

    # -- numbers -----------------------------------------------------------------------------

    def _value(self, value: Decimal | None, field: str, line: int | None = None) -> Decimal | None:
        """An amount rounded to the currency; ``line`` locates a line item's field for warnings."""
        if value is None:
            return None
        amount = self.denomination.amount(value)
        if amount is None:
            self._warn(
                "number_out_of_range",
                _path(field, line),
                f"{_shown(value)} is not a readable amount",
            )
            return None
        self.amounts_seen = True
        return amount

    def _money(self, value: Decimal | None) -> Money | None:
        return None if value is None else self.denomination.money(value)

    def _totals(
        self, subtotal: Decimal | None, tax: Decimal | None, total: Decimal | None
    ) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
        return (
            self._value(subtotal, "subtotal"),
            self._value(tax, "tax"),
            self._value(total, "total"),
        )

    def _quantity(self, value: Decimal | None, line: int) -> str | None:
        if value is None:
            return None
        text, _ = _reading(value)
        if text is None:
            self._warn(
                "number_out_of_range", _path("quantity", line), f"{_shown(value)} is not a number"
            )
        return text

    def _rate(self, value: Decimal | None, field: str, line: int | None = None) -> str | None:
        if value is None:
            return None
        text, percentage = _reading(value)
        if text is None:
            self._warn(
                "number_out_of_range", _path(field, line), f"{_shown(value)} is not a number"
            )
        elif not percentage:
            self._warn(
                "tax_rate_suspicious", _path(field, line), f"{text} is not a plausible percentage"
            )
        return text

    def _line_items(
        self,
        items: Sequence[OcrLineItem],
        subtotal: Decimal | None,
        tax: Decimal | None,
        total: Decimal | None,
        discount: Decimal | None,
    ) -> list[LineItem]:
        """The normalized lines; checks them and the document totals against each other."""
        lines: list[LineItem] = []
        line_subtotals: Decimal | None = Decimal(0)
        line_totals: Decimal | None = Decimal(0)
        # Bound once: this loop is the hot path of normalization (5 amounts per line).
        read, money = self._value, self.denomination.money
        for index, item in enumerate(items):
            unit_price = read(item.unit_price, "unit_price", index)
            item_subtotal = read(item.subtotal, "subtotal", index)
            tax_amount = read(item.tax_amount, "tax_amount", index)
            item_total = read(item.total_amount, "total", index)
            line_subtotals = _add(line_subtotals, item_subtotal)
            line_totals = _add(line_totals, item_total)
            lines.append(
                LineItem(
                    position=index + 1,
                    name=_text(item.name),
                    description=_text(item.description),
                    quantity=self._quantity(item.quantity, index),
                    unit=_text(item.unit),
                    unit_price=None if unit_price is None else money(unit_price),
                    subtotal=None if item_subtotal is None else money(item_subtotal),
                    tax_rate=self._rate(item.tax_rate, "tax_rate", index),
                    tax_amount=None if tax_amount is None else money(tax_amount),
                    total=None if item_total is None else money(item_total),
                    reference=_text(item.line_reference),
                )
            )
        self._check_lines(len(lines), line_subtotals, line_totals, subtotal, total, discount)
        self._check_totals(subtotal, tax, total, discount)
        return lines

    def _check_lines(
        self,
        count: int,
        line_subtotals: Decimal | None,
        line_totals: Decimal | None,
        subtotal: Decimal | None,
        total: Decimal | None,
        discount: Decimal | None,
    ) -> None:
        """Net lines must sum to the subtotal; lines with only gross totals, to the total."""
        tolerance = self.denomination.minor_unit * count
        if not count:
            return
        if line_subtotals is not None and subtotal is not None:
            if not _close(subtotal, tolerance, line_subtotals, discount=None):
                self._warn(
                    "line_items_mismatch",
                    "subtotal",
                    f"line items sum to {line_subtotals}, subtotal is {subtotal}",
                )
            return
        if (
            line_totals is not None
            and total is not None
            and not _close(total, tolerance, line_totals, discount)
        ):
            self._warn(
                "line_items_mismatch",
                "total",
                f"line item totals sum to {line_totals}, total is {total}",
            )

    def _check_totals(
        self,
        subtotal: Decimal | None,
        tax: Decimal | None,
        total: Decimal | None,
        discount: Decimal | None,
    ) -> None:
        if subtotal is None or tax is None or total is None:
            return
        if not _close(total, self.denomination.minor_unit * 2, subtotal + tax, discount):
            self._warn(
                "totals_mismatch", "total", f"subtotal {subtotal} + tax {tax} is not {total}"
            )

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
        """A receipt's time of issue and its local date; a date alone leaves the time null."""
        text = _text(text)
        if text is None or len(text) <= len("YYYY-MM-DD"):
            return None, self._date(text, "issued_at")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None, self._date(text, "issued_at")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # Monite's timestamps are UTC unless they say
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
        if country is not None and country not in _COUNTRIES:
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


def _close(target: Decimal, tolerance: Decimal, value: Decimal, discount: Decimal | None) -> bool:
    """Whether ``value`` matches ``target``, before or after a discount (receipts print either)."""
    if abs(value - target) <= tolerance:
        return True
    return discount is not None and abs(value - discount - target) <= tolerance


def _shown(value: object) -> str:
    """A recognized value quoted in a message, cut short: OCR text may be arbitrarily long."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[: _SHOWN_CHARS - 1]}…"


def _path(field: str, line: int | None) -> str:
    return field if line is None else f"line_items[{line}].{field}"


@functools.lru_cache(maxsize=1024)
def _reading(value: Decimal) -> tuple[str | None, bool]:
    """A rate's or quantity's plain text (``None`` if unreadable), and whether it is a percentage.

    Memoized: documents repeat the same few rates and quantities.
    """
    number = read_number(value)
    if number is None:
        return None, False
    return decimal_text(number), number == 0 or 1 <= number <= _HUNDRED


def _add(total: Decimal | None, value: Decimal | None) -> Decimal | None:
    return None if total is None or value is None else total + value


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()
