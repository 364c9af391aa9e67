"""Monite's ``recognized_data`` → ``NormalizedDocument``: pure, no I/O.

Missing values become ``null``, never guesses; values that cannot be read, and amounts that do not
add up, become ``warnings`` for a human to check. Sum checks allow one minor unit of rounding per
summed value. Over 400 lines, for the reason ``_Reader`` gives.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Final, Literal

import msgspec

from service.domain.dates import parse_date
from service.domain.identifiers import bic_is_valid, iban_is_valid, is_known_country
from service.domain.money import (
    Denomination,
    UnreadableNumberError,
    Value,
    decimal_text,
    denomination,
    percent_of,
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
    PaymentTerms,
    ReceiptDocument,
    Source,
    TaxBreakdownEntry,
    WarningCode,
)
from service.domain.terms import parse_payment_terms

_NULL: Final = b"null"
# A line item's amounts: the Monite field, and the normalized field (that warnings name).
_LINE_AMOUNTS: Final = (
    ("unit_price", "unit_price"),
    ("subtotal", "subtotal"),
    ("tax_amount", "tax_amount"),
    ("total_amount", "total"),
)
_HUNDRED: Final = Decimal(100)
# VAT number prefixes that are not the ISO 3166-1 code of their country (EN 16931 BR-CO-9).
_VAT_PREFIX_COUNTRY: Final = {"EL": "GR", "XI": "GB"}
# The nets of the lines of one tax rate, and the taxes those lines print (in minor units).
_RateLines = tuple[list[int], list[int]]
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
    """Reads one recognized document, collecting the warnings on the way.

    Over 200 lines, for a reason: every reading and check of a document shares the currency's
    denomination and the warnings list, and the hot path (one instance per document, ~90 µs in
    all) cannot afford a layer between them. Its next growth should move the EN 16931 checks
    (tax breakdown, amount due, VAT prefixes) into a mixin module of their own.
    """

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
        payment_terms = _text(data.payment_terms)
        terms = None if payment_terms is None else parse_payment_terms(payment_terms)
        due_date_source: Literal["printed", "derived"] | None = (
            None if due_date is None else "printed"
        )
        if _text(data.due_date) is None:
            due_date = _derived_due_date(issue_date, terms)
            due_date_source = None if due_date is None else "derived"
        line_items = self._line_items(data.line_items or (), subtotal, tax, total, discount=None)
        tax_rate = self._rate(data.tax_rate, "tax_rate")
        breakdown = self._tax_breakdown(line_items, tax_rate, subtotal, tax, total, discount=None)
        if breakdown and paid is not None and due is not None:
            self._check_amount_due(breakdown, len(line_items) or 1, paid, due)
        if due_date is None and terms is None and self._is_positive(due or total):
            self._warn(
                "payment_terms_missing",
                "payment_terms",
                "an amount is due but neither a due date nor understood payment terms are given",
            )
        return InvoiceDocument(
            schema_version=SCHEMA_VERSION,
            document_number=_text(data.document_number),
            issue_date=_iso(issue_date),
            due_date=_iso(due_date),
            due_date_source=due_date_source,
            payment_terms=payment_terms,
            terms=terms,
            currency=self.currency,
            subtotal=subtotal,
            tax=tax,
            total=total,
            amount_paid=paid,
            amount_due=due,
            tax_rate=tax_rate,
            tax_breakdown=breakdown,
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
        tax_rate = self._rate(data.tax_rate, "tax_rate")
        original_invoice_number = _text(data.original_invoice_number)
        if original_invoice_number is None:
            self._warn(
                "credit_note_without_reference",
                "original_invoice_number",
                "the credit note names no invoice it credits",
            )
        return CreditNoteDocument(
            schema_version=SCHEMA_VERSION,
            document_number=_text(data.document_number),
            original_invoice_number=original_invoice_number,
            issue_date=_iso(self._date(data.issue_date, "issue_date")),
            currency=self.currency,
            subtotal=subtotal,
            tax=tax,
            total=total,
            tax_rate=tax_rate,
            tax_breakdown=self._tax_breakdown(
                line_items, tax_rate, subtotal, tax, total, discount=None
            ),
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
        tax_rate = self._rate(data.tax_rate, "tax_rate")
        breakdown = self._tax_breakdown(line_items, tax_rate, subtotal, tax, total, discount)
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
            tax_rate=tax_rate,
            tax_breakdown=breakdown,
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

    # -- tax breakdown (EN 16931 BG-23) -------------------------------------------------------

    def _tax_breakdown(
        self,
        lines: list[LineItem],
        rate: str | None,
        subtotal: Money | None,
        tax: Money | None,
        total: Money | None,
        discount: Money | None,
    ) -> list[TaxBreakdownEntry] | None:
        """Taxable amount and tax per rate, from the lines, else from the header; checked."""
        if self.denomination.exponent is None:
            return None  # BR-CO-17 rounds to the currency's exponent: there is none to round to
        groups = _rate_lines(lines)
        from_lines = groups is not None
        if groups is None:
            header = _net_and_tax(subtotal, tax, total)
            if rate is None or header is None:
                return None
            net, header_tax = header
            groups = {rate: ([net], [] if header_tax is None else [header_tax])}
        rates = list(groups) if len(groups) == 1 else sorted(groups, key=Decimal)
        entries = [
            self._breakdown_entry(index, group_rate, groups[group_rate])
            for index, group_rate in enumerate(rates)
        ]
        if from_lines:
            self._check_breakdown_sums(entries, len(lines), subtotal, tax, discount)
        return entries

    def _breakdown_entry(self, index: int, rate: str, lines: _RateLines) -> TaxBreakdownEntry:
        """One rate's entry; warns when its tax is not its taxable times its rate (BR-CO-17)."""
        nets, taxes = lines
        taxable = sum(nets)
        expected = percent_of(taxable, rate)
        # Lines that print no tax are taxed as BR-CO-17 defines; printed taxes are checked.
        tax = sum(taxes) if len(taxes) == len(nets) else expected
        if abs(tax - expected) > len(nets):
            self._warn(
                "tax_breakdown_mismatch",
                f"tax_breakdown[{index}]",
                f"tax {self.denomination.text(tax)} is not {rate} % of "
                f"{self.denomination.text(taxable)} ({self.denomination.text(expected)})",
            )
        return TaxBreakdownEntry(rate=rate, taxable=self._minor(taxable), tax=self._minor(tax))

    def _check_breakdown_sums(
        self,
        entries: list[TaxBreakdownEntry],
        count: int,
        subtotal: Money | None,
        tax: Money | None,
        discount: Money | None,
    ) -> None:
        """The breakdown must sum to the header's subtotal and tax (BR-CO-13, BR-CO-14)."""
        taxable_sum = sum(entry.taxable.minor or 0 for entry in entries)
        tax_sum = sum(entry.tax.minor or 0 for entry in entries)
        for name, header, value in (("subtotal", subtotal, taxable_sum), ("tax", tax, tax_sum)):
            if (
                header is not None
                and not self._close(header, count, value, discount)
                and not self._warned("line_items_mismatch", name)  # the lines' check said it
            ):
                self._warn(
                    "totals_mismatch",
                    name,
                    f"tax breakdown sums to {self.denomination.text(value)}, "
                    f"{name} is {header.amount}",
                )

    def _check_amount_due(
        self, entries: list[TaxBreakdownEntry], count: int, paid: Money, due: Money
    ) -> None:
        """Amount due must be the breakdown's gross minus paid (BR-CO-16 with BR-CO-15)."""
        if any(w.code in ("line_items_mismatch", "totals_mismatch") for w in self.warnings):
            return  # the inconsistency is already reported where it starts
        gross = sum((entry.taxable.minor or 0) + (entry.tax.minor or 0) for entry in entries)
        # A breakdown exists only in a currency with minor units: every Money here has them.
        expected = gross - (paid.minor or 0)
        if abs(expected - (due.minor or 0)) > count + 1:
            self._warn(
                "amount_due_mismatch",
                "amount_due",
                f"tax breakdown gross {self.denomination.text(gross)} - paid {paid.amount} is "
                f"{self.denomination.text(expected)}, amount due is {due.amount}",
            )

    def _minor(self, minor: int) -> Money:
        return Money(amount=self.denomination.text(minor), minor=minor, currency=self.currency)

    def _is_positive(self, money: Money | None) -> bool:
        return money is not None and self.denomination.value(money) > 0

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
        self._check_vat_country(party, path)
        return None if party == _EMPTY_PARTY else party

    def _check_vat_country(self, party: Party, path: str) -> None:
        """A VAT number's prefix names the country that issued it (EN 16931 BR-CO-9)."""
        vat = _compact(party.vat_number)
        country = party.address.country if party.address is not None else None
        if vat is None or country is None or not vat[:2].isalpha():
            return
        prefix = _VAT_PREFIX_COUNTRY.get(vat[:2], vat[:2])
        if is_known_country(prefix) and prefix != country:
            self._warn(
                "vat_number_country_mismatch",
                f"{path}.vat_number",
                f"VAT number prefix {vat[:2]} is not the {path}'s country {country}",
            )

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

    def _warned(self, code: WarningCode, field: str) -> bool:
        return any(w.code == code and w.field == field for w in self.warnings)

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


def _rate_lines(lines: list[LineItem]) -> dict[str, _RateLines] | None:
    """The lines' nets and printed taxes by rate; ``None`` unless every line has both a rate and
    a net amount (an incomplete breakdown would misstate the document).

    The hot path of the breakdown: no call per line where the line prints its net and tax.
    """
    if not lines:
        return None
    groups: dict[str, _RateLines] = {}
    for line in lines:
        rate, net, tax = line.tax_rate, line.subtotal, line.tax_amount
        if net is not None and tax is not None:
            net_minor, tax_minor = net.minor or 0, tax.minor
        elif (amounts := _net_and_tax(net, tax, line.total)) is not None:
            net_minor, tax_minor = amounts
        else:
            return None
        if rate is None:
            return None
        group = groups.get(rate)
        if group is None:
            group = groups[rate] = ([], [])
        group[0].append(net_minor)
        if tax_minor is not None:
            group[1].append(tax_minor)
    return groups


def _net_and_tax(
    net: Money | None, tax: Money | None, gross: Money | None
) -> tuple[int, int | None] | None:
    """Net and tax in minor units from two of net, tax and gross; tax ``None`` if not given."""
    if net is not None and net.minor is not None:
        tax_minor = tax.minor if tax is not None else None
        if tax_minor is None and gross is not None and gross.minor is not None:
            tax_minor = gross.minor - net.minor
        return net.minor, tax_minor
    if tax is not None and tax.minor is not None and gross is not None and gross.minor is not None:
        return gross.minor - tax.minor, tax.minor
    return None


def _derived_due_date(issue_date: date | None, terms: PaymentTerms | None) -> date | None:
    """Issue date + net days, when a due date was not printed and both are known."""
    if issue_date is None or terms is None or terms.net_days is None:
        return None
    try:
        return issue_date + timedelta(days=terms.net_days)
    except OverflowError:  # 9999-12-31 + 30 days
        return None


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()
