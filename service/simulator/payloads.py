"""Monite's ``recognized_data`` shapes: ``OCRInvoice``, ``OCRCreditNote``, ``OCRReceipt``.

Optional fields default to ``UNSET`` and are then left out of the JSON, as the spec describes;
the generator sets some of them to ``None`` on purpose, because Monite's SDK says any of them may
arrive as ``null``.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

Text: TypeAlias = str | UnsetType | None
Number: TypeAlias = float | UnsetType | None


class Address(msgspec.Struct, kw_only=True):
    """``OCRAddressDetails``; every field optional."""

    street_and_number: Text = UNSET
    city: Text = UNSET
    postal_code: Text = UNSET
    state: Text = UNSET
    country: Text = UNSET


class BankAccount(msgspec.Struct, kw_only=True):
    """``OCRBankDetails``; every field optional."""

    iban: Text = UNSET
    swift_bic: Text = UNSET
    bank_account_number: Text = UNSET


class Counterpart(msgspec.Struct, kw_only=True):
    """``OCRCounterpartDetails``; ``address`` and ``bank_account`` are always present."""

    address: Address
    bank_account: BankAccount
    name: Text = UNSET
    email: Text = UNSET
    tax_number: Text = UNSET
    vat_number: Text = UNSET


class LineItem(msgspec.Struct, kw_only=True):
    """``OCRLineItem`` and, with ``discount_amount``, ``OCRReceiptLineItem``."""

    name: Text = UNSET
    description: Text = UNSET
    quantity: Number = UNSET
    unit: Text = UNSET
    unit_price: Number = UNSET
    subtotal: Number = UNSET
    tax_rate: Number = UNSET
    tax_amount: Number = UNSET
    total_amount: Number = UNSET
    line_reference: Text = UNSET
    discount_amount: Number = UNSET


class Invoice(msgspec.Struct, tag_field="type", tag="invoice", kw_only=True):
    """``OCRInvoice``."""

    sender: Counterpart
    recipient: Counterpart
    document_number: Text = UNSET
    issue_date: Text = UNSET
    due_date: Text = UNSET
    payment_terms: Text = UNSET
    currency: Text = UNSET
    subtotal: Number = UNSET
    tax_rate: Number = UNSET
    tax_amount: Number = UNSET
    total_amount: Number = UNSET
    amount_paid: Number = UNSET
    line_items: list[LineItem] | UnsetType | None = UNSET


class CreditNote(msgspec.Struct, tag_field="type", tag="credit_note", kw_only=True):
    """``OCRCreditNote``."""

    sender: Counterpart
    recipient: Counterpart
    line_items: list[LineItem]
    document_number: Text = UNSET
    original_invoice_number: Text = UNSET
    issue_date: Text = UNSET
    currency: Text = UNSET
    subtotal: Number = UNSET
    tax_rate: Number = UNSET
    tax_amount: Number = UNSET
    total_amount: Number = UNSET


class Receipt(msgspec.Struct, tag_field="type", tag="receipt", kw_only=True):
    """``OCRReceipt``: no recipient, ``issued_at`` is a date-time."""

    sender: Counterpart
    line_items: list[LineItem]
    document_number: Text = UNSET
    issued_at: Text = UNSET
    currency: Text = UNSET
    subtotal: Number = UNSET
    tax_rate: Number = UNSET
    tax_amount: Number = UNSET
    tax_type: Text = UNSET
    discount: Number = UNSET
    total_amount: Number = UNSET


RecognizedData: TypeAlias = Invoice | CreditNote | Receipt
