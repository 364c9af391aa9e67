"""Decode + normalize + encode of a 20-line invoice: msgspec (ours) against a pydantic v2 twin.

Run: ``.venv/bin/python bench/normalize.py`` (pydantic is a bench-only dependency). Both pipelines
read the same Monite task bytes and produce the same event JSON (checked before timing); they
share the domain rules that do not depend on the model library (reading a number's text into
money, date parsing, IBAN/BIC checks), so the comparison measures the models: decoding, building,
encoding. pydantic hands over amounts as ``Decimal`` (exact), whose text the twin reads with the
same rule. The IBAN/BIC checks are memoized in both, as in production where sellers recur; so is
the payment terms parser (issue 16), whose first sight of a text is timed on its own.

``--against REV`` compares this tree's pipeline with another revision's instead, side by side
in one run: each tree is timed in its own process pinned to one core, the trees alternating
(A B B A …) so that a host whose speed drifts during the run hurts neither more; it prints
documents/s on one core for both, and the floor that tells how fast the host ran. ``--compiled``
adds this tree's wheel, whose hot path mypyc compiled (what the Docker image runs), to the trees
compared; alone, it compares the source with the wheel.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import timeit
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from service.domain.dates import parse_date
from service.domain.duplicates import duplicate_fingerprint
from service.domain.events import encode_event, recognized_event
from service.domain.identifiers import bic_is_valid, iban_is_valid, is_known_country
from service.domain.money import (
    Denomination,
    UnreadableNumberError,
    decimal_text,
    denomination,
    percent_of,
    read_number,
)
from service.domain.monite_models import decode_task
from service.domain.normalize import NormalizeContext, normalize
from service.domain.schema import SCHEMA_VERSION, Money, NormalizedDocument
from service.domain.terms import parse_payment_terms

LINES = 20
# Printed terms with a discount, the longest path through the terms parser (timed alone; the
# invoice prints "30 Tage netto" as before, so timings compare with earlier runs).
TERMS = "2 % Skonto bei Zahlung innerhalb von 10 Tagen, 30 Tage netto"
AT = datetime(2026, 11, 20, 10, 15, 12, tzinfo=UTC)


def invoice_body(lines: int = LINES) -> bytes:
    """A Monite invoice task with ``lines`` distinct line items that add up."""
    items = []
    for i in range(lines):
        price = Decimal(1000 + 137 * i) / 100
        quantity = 1 + i % 4
        net = price * quantity
        tax = (net * Decimal("0.19")).quantize(Decimal("0.01"))
        items.append(
            {
                "name": f"Article {i + 1}",
                "description": "Karton à 5 x 500 Blatt" if i % 3 == 0 else None,
                "quantity": float(quantity),
                "unit": "Stück",
                "unit_price": float(price),
                "subtotal": float(net),
                "tax_rate": 19.0,
                "tax_amount": float(tax),
                "total_amount": float(net + tax),
                "line_reference": f"ART-{1000 + i}",
            }
        )
    subtotal = sum((Decimal(str(item["subtotal"])) for item in items), Decimal(0))
    tax = sum((Decimal(str(item["tax_amount"])) for item in items), Decimal(0))
    party = {
        "address": {
            "street_and_number": "Hauptstraße 12",
            "city": "Berlin",
            "postal_code": "10115",
            "country": "DE",
        },
        "bank_account": {"iban": "DE89 3704 0044 0532 0130 00", "swift_bic": "COBADEFFXXX"},
        "name": "Müller Bürobedarf GmbH",
        "email": "rechnung@mueller-buero.de",
        "vat_number": "DE123456789",
    }
    task = {
        "id": "2b9f1c3e-7a41-4d2a-9a51-0c7c1f5e8d10",
        "created_at": "2026-11-20T10:15:00Z",
        "updated_at": "2026-11-20T10:15:11.482913Z",
        "status": "success",
        "document_type": "invoice",
        "recognized_data": {
            "type": "invoice",
            "sender": party,
            "recipient": {**party, "bank_account": {}, "name": "Acme Logistics B.V."},
            "document_number": "RE-2026-0815",
            "issue_date": "2026-11-01",
            "due_date": "2026-12-01",
            "payment_terms": "30 Tage netto",
            "currency": "EUR",
            "subtotal": float(subtotal),
            "tax_rate": 19.0,
            "tax_amount": float(tax),
            "total_amount": float(subtotal + tax),
            "amount_paid": 0.0,
            "line_items": items,
        },
    }
    return json.dumps(task).encode()


# -- ours -----------------------------------------------------------------------------------------


def msgspec_pipeline(body: bytes) -> bytes:
    """What the worker does with a finished task: decode, normalize, encode the event."""
    task = decode_task(body)
    document = normalize(task, NormalizeContext(task_id=task.id, entity_id=None))
    event = recognized_event(
        watch_id="w", task_id=task.id, entity_id=None, metadata={}, document=document, at=AT
    )
    return encode_event(event)


def floor_pipeline(body: bytes, document: NormalizedDocument) -> bytes:
    """``msgspec_pipeline`` with normalization for free (``document`` made beforehand): what
    decoding and encoding alone cost, the floor no faster ``normalize`` can go below."""
    task = decode_task(body)
    event = recognized_event(
        watch_id="w", task_id=task.id, entity_id=None, metadata={}, document=document, at=AT
    )
    return encode_event(event)


# -- the pydantic v2 twin -------------------------------------------------------------------------

_IN = ConfigDict(extra="ignore", frozen=True)
_OUT = ConfigDict(frozen=True)


class PAddressIn(BaseModel):
    model_config = _IN
    street_and_number: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = None


class PBankIn(BaseModel):
    model_config = _IN
    iban: str | None = None
    swift_bic: str | None = None
    bank_account_number: str | None = None


class PCounterpartIn(BaseModel):
    model_config = _IN
    name: str | None = None
    email: str | None = None
    tax_number: str | None = None
    vat_number: str | None = None
    address: PAddressIn | None = None
    bank_account: PBankIn | None = None


class PLineIn(BaseModel):
    model_config = _IN
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


class PInvoiceIn(BaseModel):
    model_config = _IN
    type: Literal["invoice"]
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
    sender: PCounterpartIn | None = None
    recipient: PCounterpartIn | None = None
    line_items: list[PLineIn] | None = None


class PTaskIn(BaseModel):
    model_config = _IN
    id: str
    created_at: datetime
    updated_at: datetime
    status: str
    document_type: str | None = None
    recognized_data: Annotated[PInvoiceIn, Field(discriminator="type")] | None = None


class PMoney(BaseModel):
    model_config = _OUT
    amount: str
    minor: int | None
    currency: str | None


class PAddress(BaseModel):
    model_config = _OUT
    street: str | None
    city: str | None
    postal_code: str | None
    state: str | None
    country: str | None


class PBank(BaseModel):
    model_config = _OUT
    iban: str | None
    iban_valid: bool | None
    bic: str | None
    account_number: str | None


class PParty(BaseModel):
    model_config = _OUT
    name: str | None
    email: str | None
    tax_number: str | None
    vat_number: str | None
    address: PAddress | None
    bank_account: PBank | None


class PLine(BaseModel):
    model_config = _OUT
    position: int
    name: str | None
    description: str | None
    quantity: str | None
    unit: str | None
    unit_price: PMoney | None
    subtotal: PMoney | None
    tax_rate: str | None
    tax_amount: PMoney | None
    total: PMoney | None
    reference: str | None


class PWarning(BaseModel):
    model_config = _OUT
    code: str
    field: str | None
    message: str
    related: None = None  # only possible_duplicate has one, and the store adds it


class PTerms(BaseModel):
    model_config = _OUT
    net_days: int | None
    discount_percent: str | None
    discount_days: int | None


class PBreakdownEntry(BaseModel):
    model_config = _OUT
    rate: str
    taxable: PMoney
    tax: PMoney


class PSource(BaseModel):
    model_config = _OUT
    provider: Literal["monite"]
    task_id: str
    entity_id: str | None
    recognized_at: datetime


class PInvoice(BaseModel):
    model_config = _OUT
    kind: Literal["invoice"]
    schema_version: str
    document_number: str | None
    issue_date: str | None
    due_date: str | None
    due_date_source: Literal["printed", "derived"] | None
    payment_terms: str | None
    terms: PTerms | None
    currency: str | None
    subtotal: PMoney | None
    tax: PMoney | None
    total: PMoney | None
    amount_paid: PMoney | None
    amount_due: PMoney | None
    tax_rate: str | None
    tax_breakdown: list[PBreakdownEntry] | None
    seller: PParty | None
    buyer: PParty | None
    line_items: list[PLine]
    warnings: list[PWarning]
    source: PSource


class PEventData(BaseModel):
    model_config = _OUT
    watch_id: str
    task_id: str
    entity_id: str | None
    metadata: dict[str, Any]
    document: PInvoice | None
    error: None


class PEvent(BaseModel):
    model_config = _OUT
    type: str
    timestamp: datetime
    data: PEventData


def _text(value: str | None) -> str | None:
    return (value.strip() or None) if value else None


def _compact(value: str | None) -> str | None:
    return "".join(value.split()).upper() or None if value else None


class _PydanticReader:
    """The rules of service.domain.normalize for invoices, building pydantic models."""

    def __init__(self, currency: str | None) -> None:
        self.currency = _compact(currency)
        self.unit: Denomination = denomination(self.currency)
        self.warnings: list[PWarning] = []

    def warn(self, code: str, field: str) -> None:
        self.warnings.append(PWarning(code=code, field=field, message=code))

    def amount(self, value: Decimal | None, field: str) -> Money | None:
        if value is None:
            return None
        try:
            return self.unit.money(str(value).encode())
        except UnreadableNumberError:
            self.warn("number_out_of_range", field)
            return None

    def money(self, money: Money | None) -> PMoney | None:
        if money is None:
            return None
        return PMoney(amount=money.amount, minor=money.minor, currency=money.currency)

    def plain(self, value: Decimal | None, field: str, rate: bool = False) -> str | None:
        number = None if value is None else read_number(value)
        if number is None:
            return None
        if rate and not (number == 0 or 1 <= number <= 100):
            self.warn("tax_rate_suspicious", field)
        return decimal_text(number)

    def day(self, text: str | None, field: str) -> date | None:
        if not _text(text):
            return None
        day, problem = parse_date(text or "")
        if problem:
            self.warn(problem, field)
        return day

    def party(self, counterpart: PCounterpartIn | None, path: str) -> PParty | None:
        if counterpart is None:
            return None
        party = PParty(
            name=_text(counterpart.name),
            email=_text(counterpart.email),
            tax_number=_text(counterpart.tax_number),
            vat_number=_text(counterpart.vat_number),
            address=self.address(counterpart.address),
            bank_account=self.bank(counterpart.bank_account, f"{path}.bank_account"),
        )
        vat, country = _compact(party.vat_number), party.address and party.address.country
        prefix = vat and {"EL": "GR", "XI": "GB"}.get(vat[:2], vat[:2])
        if prefix and country and is_known_country(prefix) and prefix != country:
            self.warn("vat_number_country_mismatch", f"{path}.vat_number")
        return None if not any(party.model_dump().values()) else party

    def address(self, address: PAddressIn | None) -> PAddress | None:
        if address is None:
            return None
        result = PAddress(
            street=_text(address.street_and_number),
            city=_text(address.city),
            postal_code=_text(address.postal_code),
            state=_text(address.state),
            country=_compact(address.country),
        )
        return None if not any(result.model_dump().values()) else result

    def bank(self, bank: PBankIn | None, path: str) -> PBank | None:
        if bank is None:
            return None
        iban, bic = _compact(bank.iban), _compact(bank.swift_bic)
        valid = None if iban is None else iban_is_valid(iban)
        if valid is False:
            self.warn("iban_invalid", f"{path}.iban")
        if bic is not None and not bic_is_valid(bic):
            self.warn("bic_invalid", f"{path}.bic")
        number = _text(bank.bank_account_number)
        if iban is None and bic is None and number is None:
            return None
        return PBank(iban=iban, iban_valid=valid, bic=bic, account_number=number)

    def breakdown(
        self, lines: list[PLine], subtotal: Money | None, tax: Money | None
    ) -> list[PBreakdownEntry] | None:
        """The tax breakdown of lines that all have a rate and a net amount, checked."""
        groups: dict[str, list[tuple[int, int | None]]] = {}
        for line in lines:
            if line.tax_rate is None or line.subtotal is None or line.subtotal.minor is None:
                return None
            line_tax = None if line.tax_amount is None else line.tax_amount.minor
            groups.setdefault(line.tax_rate, []).append((line.subtotal.minor, line_tax))
        entries = []
        for index, rate in enumerate(sorted(groups, key=Decimal)):
            taxable = sum(net for net, _ in groups[rate])
            expected = percent_of(taxable, rate)
            taxes = [line_tax for _, line_tax in groups[rate] if line_tax is not None]
            rate_tax = sum(taxes) if len(taxes) == len(groups[rate]) else expected
            if abs(rate_tax - expected) > len(groups[rate]):
                self.warn("tax_breakdown_mismatch", f"tax_breakdown[{index}]")
            entries.append(
                PBreakdownEntry(rate=rate, taxable=self.minor(taxable), tax=self.minor(rate_tax))
            )
        for name, header, parts in (("subtotal", subtotal, "taxable"), ("tax", tax, "tax")):
            entry_sum = sum(getattr(entry, parts).minor for entry in entries)
            if header is not None and abs(entry_sum - (header.minor or 0)) > len(lines):
                self.warn("totals_mismatch", name)
        return entries

    def minor(self, minor: int) -> PMoney:
        return PMoney(amount=self.unit.text(minor), minor=minor, currency=self.currency)

    def invoice(self, data: PInvoiceIn, source: PSource) -> PInvoice:
        subtotal = self.amount(data.subtotal, "subtotal")
        tax = self.amount(data.tax_amount, "tax")
        total = self.amount(data.total_amount, "total")
        paid = self.amount(data.amount_paid, "amount_paid")
        due = None if total is None or paid is None else self.unit.difference(total, paid)
        issued, due_day = (
            self.day(data.issue_date, "issue_date"),
            self.day(data.due_date, "due_date"),
        )
        if issued and due_day and due_day < issued:
            self.warn("due_before_issue", "due_date")
        lines = []
        subtotals = []
        for index, item in enumerate(data.line_items or ()):
            path = f"line_items[{index}]"
            item_subtotal = self.amount(item.subtotal, f"{path}.subtotal")
            subtotals.append(item_subtotal)
            lines.append(
                PLine(
                    position=index + 1,
                    name=_text(item.name),
                    description=_text(item.description),
                    quantity=self.plain(item.quantity, f"{path}.quantity"),
                    unit=_text(item.unit),
                    unit_price=self.money(self.amount(item.unit_price, f"{path}.unit_price")),
                    subtotal=self.money(item_subtotal),
                    tax_rate=self.plain(item.tax_rate, f"{path}.tax_rate", rate=True),
                    tax_amount=self.money(self.amount(item.tax_amount, f"{path}.tax_amount")),
                    total=self.money(self.amount(item.total_amount, f"{path}.total")),
                    reference=_text(item.line_reference),
                )
            )
        unit, value, line_sum = self.unit.minor_unit, self.unit.value, self.unit.total(subtotals)
        if (
            lines
            and line_sum is not None
            and subtotal is not None
            and not -unit * len(lines) <= line_sum - value(subtotal) <= unit * len(lines)
        ):
            self.warn("line_items_mismatch", "subtotal")
        if (
            subtotal is not None
            and tax is not None
            and total is not None
            and not -unit * 2 <= value(subtotal) + value(tax) - value(total) <= unit * 2
        ):
            self.warn("totals_mismatch", "total")
        if total is not None and paid is not None and value(paid) - value(total) > unit:
            self.warn("paid_exceeds_total", "amount_paid")
        breakdown = self.breakdown(lines, subtotal, tax)
        payment_terms = _text(data.payment_terms)
        terms = None if payment_terms is None else parse_payment_terms(payment_terms)
        source_of_due: Literal["printed", "derived"] | None = None if due_day is None else "printed"
        if not _text(data.due_date) and issued and terms and terms.net_days is not None:
            due_day, source_of_due = issued + timedelta(days=terms.net_days), "derived"
        if due_day is None and terms is None and (owed := due or total) and value(owed) > 0:
            self.warn("payment_terms_missing", "payment_terms")
        return PInvoice(
            kind="invoice",
            schema_version=SCHEMA_VERSION,
            document_number=_text(data.document_number),
            issue_date=None if issued is None else issued.isoformat(),
            due_date=None if due_day is None else due_day.isoformat(),
            due_date_source=source_of_due,
            payment_terms=payment_terms,
            terms=None if terms is None else PTerms(**msgspec.structs.asdict(terms)),
            currency=self.currency,
            subtotal=self.money(subtotal),
            tax=self.money(tax),
            total=self.money(total),
            amount_paid=self.money(paid),
            amount_due=self.money(due),
            tax_rate=self.plain(data.tax_rate, "tax_rate", rate=True),
            tax_breakdown=breakdown,
            seller=self.party(data.sender, "seller"),
            buyer=self.party(data.recipient, "buyer"),
            line_items=lines,
            warnings=self.warnings,
            source=source,
        )


def pydantic_pipeline(body: bytes) -> bytes:
    """The same pipeline with pydantic v2 models."""
    task = PTaskIn.model_validate_json(body)
    assert task.recognized_data is not None
    source = PSource(
        provider="monite",
        task_id=task.id,
        entity_id=None,
        recognized_at=task.updated_at.astimezone(UTC),
    )
    document = _PydanticReader(task.recognized_data.currency).invoice(task.recognized_data, source)
    event = PEvent(
        type="invoice.recognized",
        timestamp=AT,
        data=PEventData(
            watch_id="w",
            task_id=task.id,
            entity_id=None,
            metadata={},
            document=document,
            error=None,
        ),
    )
    return event.model_dump_json().encode()


# -- measurement ----------------------------------------------------------------------------------


def per_call_us(function: Callable[[], object], repeat: int = 7) -> float:
    """Median over ``repeat`` runs of the mean time of one call, in microseconds."""
    number = 2000
    runs = timeit.repeat(function, number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e6


def compare_models() -> None:
    """Check both pipelines agree, then print a markdown table of the timings."""
    body = invoice_body()
    ours, theirs = json.loads(msgspec_pipeline(body)), json.loads(pydantic_pipeline(body))
    assert ours == theirs, "the two pipelines disagree"
    assert ours["data"]["document"]["warnings"] == []

    task = decode_task(body)
    context = NormalizeContext(task_id=task.id)
    document = normalize(task, context)
    rows = [
        ("msgspec: decode", per_call_us(lambda: decode_task(body))),
        ("msgspec: normalize", per_call_us(lambda: normalize(task, context))),
        ("msgspec: encode (document)", per_call_us(lambda: msgspec.json.encode(document))),
        (
            "msgspec: decode + normalize + encode (event)",
            per_call_us(lambda: msgspec_pipeline(body)),
        ),
        (
            "pydantic: decode + normalize + encode (event)",
            per_call_us(lambda: pydantic_pipeline(body)),
        ),
        (
            "msgspec floor: decode + encode (event), normalization free",
            per_call_us(lambda: floor_pipeline(body, document)),
        ),
        # Issue 16's additions timed alone (normalize above includes the tax breakdown, the new
        # checks and the memoized terms): the terms parser on a text it has not seen, and the
        # duplicate fingerprint that the poll round computes after normalize.
        (
            "issue 16: parse_payment_terms, memoized (as in normalize)",
            per_call_us(lambda: parse_payment_terms(TERMS)),
        ),
        (
            "issue 16: parse_payment_terms, a text not seen before",
            per_call_us(lambda: parse_payment_terms.__wrapped__(TERMS)),
        ),
        ("issue 16: duplicate_fingerprint", per_call_us(lambda: duplicate_fingerprint(document))),
    ]
    total_ours, total_theirs = rows[3][1], rows[4][1]
    print(
        f"{LINES}-line invoice, {len(body)} bytes in; Python {platform.python_version()}, "
        f"msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}, {platform.machine()}"
    )
    print()
    print("| step | µs per document |")
    print("|---|---:|")
    for name, micros in rows:
        print(f"| {name} | {micros:.1f} |")
    print()
    print(f"pydantic / msgspec: {total_theirs / total_ours:.1f}x")
    print(f"msgspec pipeline: {1e6 / total_ours:,.0f} documents/s on one core")


# -- this tree against another revision -----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
# Run in a fresh interpreter whose ``service`` and ``bench`` come from the tree in argv[1]: times
# that tree's own pipeline and floor on the invoice read from stdin, pinned to the CPU in argv[2].
_TREE_TIMER = """
import json, os, sys, timeit
tree, cpu = sys.argv[1], int(sys.argv[2])
sys.path[:0] = [tree, os.path.join(tree, "bench")]
os.sched_setaffinity(0, {cpu})
import service
assert service.__file__.startswith(tree), service.__file__
import normalize as bench
from service.domain.monite_models import decode_task
from service.domain.normalize import NormalizeContext, normalize
body = sys.stdin.buffer.read()
task = decode_task(body)
document = normalize(task, NormalizeContext(task_id=task.id))
def best_us(function):
    return min(timeit.repeat(function, number=500, repeat=9)) / 500 * 1e6
print(json.dumps({
    "pipeline": best_us(lambda: bench.msgspec_pipeline(body)),
    "floor": best_us(lambda: bench.floor_pipeline(body, document)),
}))
"""


def time_tree(tree: Path, body: bytes, cpu: int) -> dict[str, float]:
    """One fresh process's best µs per document of ``tree``'s pipeline and floor (the minimum of
    nine runs: the least disturbed by the rest of the host)."""
    result = subprocess.run(
        [sys.executable, "-c", _TREE_TIMER, str(tree), str(cpu)],
        input=body,
        capture_output=True,
        check=True,
    )
    timings: dict[str, float] = json.loads(result.stdout)
    return timings


def checkout(revision: str, into: Path) -> Path:
    """The files of ``revision`` of this repository, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision],
        capture_output=True,
        check=True,
    ).stdout
    tree = into / "tree"
    with tempfile.TemporaryFile() as file:
        file.write(archive)
        file.seek(0)
        with tarfile.open(fileobj=file) as tar:
            tar.extractall(tree, filter="data")
    return tree


def compiled_wheel(into: Path) -> Path:
    """This tree's wheel (its hot path compiled by mypyc, as in the image) installed under
    ``into``, with this benchmark beside it."""
    wheels, site = into / "wheels", into / "site"
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    (wheel,) = wheels.glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "-t", str(site), str(wheel)], check=True)
    (site / "bench").mkdir()
    shutil.copy(Path(__file__), site / "bench" / "normalize.py")
    return site


def compare_trees(trees: dict[str, Path], rounds: int, cpu: int) -> None:
    """Print the pipeline of each tree (the first is the baseline), timed alternately."""
    body = invoice_body()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    order = list(trees)
    for round_ in range(rounds):
        for name in order if round_ % 2 == 0 else order[::-1]:
            runs[name].append(time_tree(trees[name], body, cpu))
    print(
        f"{LINES}-line invoice, {len(body)} bytes in; {rounds} alternating rounds on CPU {cpu}; "
        f"Python {platform.python_version()}, msgspec {msgspec.__version__}, load "
        f"{os.getloadavg()[0]:.2f}"
    )
    print()
    # On a shared VM a round may run beside a busy neighbour and take twice as long: the median
    # says what a run usually gets, the best round what the code costs undisturbed.
    print(
        "| tree | pipeline µs per document (each round) | median | best | documents/s | floor µs |"
    )
    print("|---|---|---:|---:|---:|---:|")
    summary: list[tuple[float, float]] = []
    for name, timings in runs.items():
        pipeline = [timing["pipeline"] for timing in timings]
        median, best = statistics.median(pipeline), min(pipeline)
        summary.append((median, best))
        floor = min(timing["floor"] for timing in timings)
        print(
            f"| {name} | {' / '.join(f'{us:.1f}' for us in pipeline)} | {median:.1f} | "
            f"{best:.1f} | {1e6 / median:,.0f} (best {1e6 / best:,.0f}) | {floor:.1f} |"
        )
    print()
    base_median, base_best = summary[0]
    for name, (median, best) in zip(order[1:], summary[1:], strict=True):
        print(
            f"{name} / {order[0]}: {median / base_median - 1:+.1%} per document by medians, "
            f"{best / base_best - 1:+.1%} by best rounds"
        )


def main() -> None:
    """``compare_models`` by default, ``compare_trees`` with ``--against`` or ``--compiled``."""
    parser = argparse.ArgumentParser(
        description="Decode + normalize + encode: msgspec against pydantic, against a revision, "
        "or the pure source against the compiled wheel."
    )
    parser.add_argument("--against", metavar="REV", help="a git revision to compare with")
    parser.add_argument(
        "--compiled", action="store_true", help="add this tree's compiled wheel to the comparison"
    )
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds")
    parser.add_argument(
        "--cpu",
        type=int,
        default=max(os.sched_getaffinity(0)),
        help="the CPU every tree is pinned to",
    )
    arguments = parser.parse_args()
    if arguments.against is None and not arguments.compiled:
        compare_models()
        return
    with tempfile.TemporaryDirectory() as scratch:
        trees: dict[str, Path] = {}
        if arguments.against is not None:
            trees[f"{arguments.against} (baseline)"] = checkout(arguments.against, Path(scratch))
        trees["this tree"] = ROOT
        if arguments.compiled:
            trees["this tree, compiled wheel"] = compiled_wheel(Path(scratch))
        compare_trees(trees, arguments.rounds, arguments.cpu)


if __name__ == "__main__":
    main()
