"""Deterministic ``recognized_data`` for simulated OCR tasks (over 400 lines: mostly the data
tables of sellers, countries and currencies the documents are drawn from).

The same seed, task id and document type always give the same document. Documents cover several
countries and currencies with 0, 2 and 3 decimal places; line items add up except in a configured
fraction of documents (``mismatch_rate``), and a configured fraction is sparse (``sparse_rate``).
"""

from __future__ import annotations

import datetime as dt
import random
import string
from typing import Final

import msgspec

from service.simulator.payloads import (
    Address,
    BankAccount,
    Counterpart,
    CreditNote,
    Invoice,
    LineItem,
    Receipt,
    RecognizedData,
)
from service.simulator.wire import DocumentType


class Company(msgspec.Struct, frozen=True):
    """A party that can appear on a document."""

    name: str
    street: str
    city: str
    postal_code: str
    email_domain: str


class Country(msgspec.Struct, frozen=True):
    """How documents from one country look: currency, tax, IBAN layout, parties."""

    code: str
    currency: str
    exponent: int
    tax_rates: tuple[float, ...]
    tax_type: str
    vat_prefix: str
    iban_layout: str
    """BBAN layout as in the IBAN registry: ``"8n10n"`` etc.; empty when the country has no IBAN."""
    utc_offset_h: int
    companies: tuple[Company, ...]


COUNTRIES: Final[tuple[Country, ...]] = (
    Country(
        "DE",
        "EUR",
        2,
        (19.0, 7.0),
        "USt",
        "DE",
        "8n10n",
        1,
        (
            Company(
                "Müller Bürobedarf GmbH", "Hauptstraße 12", "Berlin", "10115", "mueller-buero.de"
            ),
            Company(
                "Schäfer & Söhne KG", "Königsallee 3", "Düsseldorf", "40212", "schaefer-soehne.de"
            ),
        ),
    ),
    Country(
        "AT",
        "EUR",
        2,
        (20.0, 10.0),
        "USt",
        "ATU",
        "5n11n",
        1,
        (Company("Café Central", "Herrengasse 14", "Wien", "1010", "cafecentral.at"),),
    ),
    Country(
        "NL",
        "EUR",
        2,
        (21.0, 9.0),
        "BTW",
        "NL",
        "4a10n",
        1,
        (Company("Acme Logistics B.V.", "Keizersgracht 100", "Amsterdam", "1015 CW", "acme.nl"),),
    ),
    Country(
        "FR",
        "EUR",
        2,
        (20.0, 5.5),
        "TVA",
        "FR",
        "10n11n2n",
        1,
        (
            Company(
                "Société Générale d'Écritures SARL", "12 rue de Rivoli", "Paris", "75004", "sge.fr"
            ),
        ),
    ),
    Country(
        "GB",
        "GBP",
        2,
        (20.0, 5.0),
        "VAT",
        "GB",
        "4a14n",
        0,
        (
            Company(
                "Northwind Traders Ltd", "221B Baker Street", "London", "NW1 6XE", "northwind.co.uk"
            ),
        ),
    ),
    Country(
        "US",
        "USD",
        2,
        (0.0, 8.875),
        "Sales tax",
        "",
        "",
        -5,
        (Company("Contoso Supplies Inc.", "350 Fifth Avenue", "New York", "10118", "contoso.com"),),
    ),
    Country(
        "CH",
        "CHF",
        2,
        (8.1, 2.6),
        "MWST",
        "CHE-",
        "5n12n",
        1,
        (Company("Zürcher Uhren AG", "Bahnhofstrasse 21", "Zürich", "8001", "zuercher-uhren.ch"),),
    ),
    Country(
        "JP",
        "JPY",
        0,
        (10.0, 8.0),
        "消費税",
        "T",
        "",
        9,
        (
            Company(
                "株式会社さくら商事", "千代田区丸の内1-1", "東京", "100-0005", "sakura-shoji.jp"
            ),
        ),
    ),
    Country(
        "KW",
        "KWD",
        3,
        (0.0,),
        "VAT",
        "",
        "4a22n",
        3,
        (
            Company(
                "Al-Mutawa Trading Co. W.L.L.",
                "Fahad Al-Salem Street",
                "Kuwait City",
                "13001",
                "almutawa.com.kw",
            ),
        ),
    ),
    Country(
        "BH",
        "BHD",
        3,
        (10.0,),
        "VAT",
        "",
        "4a14n",
        3,
        (
            Company(
                "Manama Marine Supplies W.L.L.",
                "Road 1702, Block 317",
                "Manama",
                "317",
                "manamamarine.bh",
            ),
        ),
    ),
)

# Catalogue prices are in euro-sized units; these currencies count in much smaller ones.
_PRICE_SCALE: Final = {"JPY": 150}

_PRODUCTS: Final = (
    ("Kopierpapier A4, 80 g", "Karton", 18.0, 30.0),
    ("Toner HP 59A", "Stück", 80.0, 140.0),
    ("Consulting services", "h", 90.0, 180.0),
    ("Pallet jack rental", "day", 25.0, 60.0),
    ("Freight, zone 2", None, 40.0, 250.0),
    ("Melange", None, 3.9, 5.2),
    ("Office chair ErgoPro", "pcs", 180.0, 420.0),
    ("Software licence, annual", "seat", 99.0, 499.0),
    ("ボールペン 黒", "本", 1.2, 2.5),
    ("Cleaning, monthly", "month", 300.0, 900.0),
)


def generate(
    seed: int,
    task_id: str,
    document_type: DocumentType,
    *,
    mismatch_rate: float,
    sparse_rate: float,
) -> bytes:
    """The JSON ``recognized_data`` of one task: the same inputs always give the same bytes."""
    rng = random.Random(f"{seed}:{task_id}")
    document: RecognizedData
    if rng.random() < sparse_rate:
        document = _sparse(rng, document_type)
    else:
        seller_country, buyer_country = rng.choice(COUNTRIES), rng.choice(COUNTRIES)
        builder = _Builder(rng, seller_country, mismatched=rng.random() < mismatch_rate)
        document = builder.build(document_type, buyer_country)
    return msgspec.json.encode(document)


class _Builder:
    """Builds one consistent document; ``mismatched`` breaks exactly one of its sums."""

    def __init__(self, rng: random.Random, country: Country, *, mismatched: bool) -> None:
        self.rng = rng
        self.country = country
        flaws = ("line_sum", "total", "iban") if country.iban_layout else ("line_sum", "total")
        self.flaw = rng.choice(flaws) if mismatched else None

    def money(self, value: float) -> float:
        return round(value, self.country.exponent)

    def build(self, document_type: DocumentType, buyer_country: Country) -> RecognizedData:
        rng = self.rng
        tax_rate = rng.choice(self.country.tax_rates)
        items = [
            self.line_item(tax_rate, receipt=document_type == "receipt")
            for _ in range(rng.randint(1, 5))
        ]
        subtotal = self.money(sum(float(i.subtotal or 0) for i in items))
        tax = self.money(sum(float(i.tax_amount or 0) for i in items))
        if self.flaw == "line_sum":
            subtotal = self.money(subtotal + rng.choice((1, 10, 100)) / 10**self.country.exponent)
        total = self.money(subtotal + tax)
        if self.flaw == "total":
            total = self.money(total + rng.choice((-1, 1)) * 5)
        issued = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 330))
        number = f"{rng.randint(1000, 9999)}-{rng.randint(1, 99999):05d}"
        sender = self.party(self.country)
        if document_type == "receipt":
            clock = dt.time(rng.randint(7, 21), rng.randint(0, 59), rng.randint(0, 59))
            zone = dt.timezone(dt.timedelta(hours=self.country.utc_offset_h))
            return Receipt(
                sender=sender,
                line_items=items,
                document_number=number,
                issued_at=dt.datetime.combine(issued, clock, zone).isoformat(),
                currency=self.country.currency,
                subtotal=subtotal,
                tax_rate=tax_rate,
                tax_amount=tax,
                tax_type=self.country.tax_type,
                discount=0.0,
                total_amount=total,
            )
        recipient = self.party(buyer_country)
        if document_type == "credit_note":
            return CreditNote(
                sender=sender,
                recipient=recipient,
                line_items=items,
                document_number=f"CN-{number}",
                original_invoice_number=f"INV-{rng.randint(1, 9999)}",
                issue_date=issued.isoformat(),
                currency=self.country.currency,
                subtotal=subtotal,
                tax_rate=tax_rate,
                tax_amount=tax,
                total_amount=total,
            )
        paid = self.money(total if rng.random() < 0.2 else 0.0)
        return Invoice(
            sender=sender,
            recipient=recipient,
            line_items=items,
            document_number=f"RE-{number}",
            issue_date=issued.isoformat(),
            due_date=(issued + dt.timedelta(days=rng.choice((0, 14, 30, 60)))).isoformat(),
            payment_terms=rng.choice(("30 days net", "14 Tage netto", "Due on receipt", None)),
            currency=self.country.currency,
            subtotal=subtotal,
            tax_rate=tax_rate,
            tax_amount=tax,
            total_amount=total,
            amount_paid=paid,
        )

    def line_item(self, tax_rate: float, *, receipt: bool) -> LineItem:
        rng = self.rng
        name, unit, low, high = rng.choice(_PRODUCTS)
        quantity = (
            float(rng.randint(1, 20)) if rng.random() < 0.8 else round(rng.uniform(0.5, 9), 2)
        )
        unit_price = self.money(rng.uniform(low, high) * _PRICE_SCALE.get(self.country.currency, 1))
        subtotal = self.money(quantity * unit_price)
        tax = self.money(subtotal * tax_rate / 100)
        return LineItem(
            name=name,
            quantity=quantity,
            unit=unit if unit else msgspec.UNSET,
            unit_price=unit_price,
            subtotal=subtotal,
            tax_rate=tax_rate,
            tax_amount=tax,
            total_amount=self.money(subtotal + tax),
            line_reference=f"ART-{rng.randint(1000, 9999)}"
            if rng.random() < 0.5
            else msgspec.UNSET,
            discount_amount=0.0 if receipt else msgspec.UNSET,
        )

    def party(self, country: Country) -> Counterpart:
        rng = self.rng
        company = rng.choice(country.companies)
        bank = BankAccount()
        if country.iban_layout:
            iban = _iban(rng, country.code, country.iban_layout)
            if self.flaw == "iban":
                iban = iban[:-1] + str((int(iban[-1]) + 1) % 10)
            bank = BankAccount(iban=_grouped(iban), swift_bic=_bic(rng, country.code))
        elif rng.random() < 0.5:
            bank = BankAccount(
                bank_account_number=str(rng.randint(10**9, 10**10 - 1)),
                swift_bic=_bic(rng, country.code),
            )
        return Counterpart(
            address=Address(
                street_and_number=company.street,
                city=company.city,
                postal_code=company.postal_code,
                country=country.code,
            ),
            bank_account=bank,
            name=company.name,
            email=f"billing@{company.email_domain}" if rng.random() < 0.7 else msgspec.UNSET,
            vat_number=(
                f"{country.vat_prefix}{rng.randint(10**8, 10**9 - 1)}"
                if country.vat_prefix
                else msgspec.UNSET
            ),
        )


def _sparse(rng: random.Random, document_type: DocumentType) -> RecognizedData:
    """Little recognized; some absent fields come as explicit ``null``, as the SDK allows."""
    sender = Counterpart(
        address=Address(country=None),
        bank_account=BankAccount(),
        name=rng.choice(("Unknown Vendor", None)),
    )
    total = round(rng.uniform(1, 500), 2) if rng.random() < 0.7 else None
    if document_type == "receipt":
        return Receipt(sender=sender, line_items=[], total_amount=total, currency=None)
    recipient = Counterpart(address=Address(), bank_account=BankAccount())
    if document_type == "credit_note":
        return CreditNote(
            sender=sender, recipient=recipient, line_items=[LineItem(total_amount=total)]
        )
    return Invoice(sender=sender, recipient=recipient, total_amount=total, line_items=None)


def _iban(rng: random.Random, country: str, layout: str) -> str:
    bban = ""
    count = ""
    for char in layout:
        if char.isdigit():
            count += char
            continue
        alphabet = string.ascii_uppercase if char == "a" else string.digits
        bban += "".join(rng.choice(alphabet) for _ in range(int(count)))
        count = ""
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def _grouped(iban: str) -> str:
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def _bic(rng: random.Random, country: str) -> str:
    bank = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
    return f"{bank}{country}{rng.choice(('2L', 'FF', 'MM', '22'))}{rng.choice(('', 'XXX'))}"
