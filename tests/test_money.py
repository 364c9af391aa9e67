"""Decimal money: reading recognized numbers, ISO 4217 exponents, rounding, minor units."""

from __future__ import annotations

from decimal import Decimal

import pytest

from service.domain.money import (
    currency_exponent,
    decimal_text,
    denomination,
    read_number,
)
from service.domain.schema import Money


def _money(value: str, currency: str | None) -> Money:
    unit = denomination(currency)
    amount = unit.amount(Decimal(value))
    assert amount is not None
    return unit.money(amount)


@pytest.mark.parametrize(("code", "exponent"), [("JPY", 0), ("EUR", 2), ("KWD", 3), ("XYZ", None)])
def test_exponent_comes_from_iso_4217(code: str, exponent: int | None) -> None:
    assert currency_exponent(code) == exponent


@pytest.mark.parametrize(
    ("value", "currency", "amount", "minor"),
    [
        ("1487.5", "EUR", "1487.50", 148750),
        ("1500", "JPY", "1500", 1500),
        ("1499.5", "JPY", "1500", 1500),
        ("12.3456", "KWD", "12.346", 12346),
        ("0.125", "EUR", "0.13", 13),
        ("-0.125", "EUR", "-0.13", -13),
        ("1.005", "EUR", "1.01", 101),
        ("-0.001", "EUR", "0.00", 0),
    ],
)
def test_amount_is_rounded_half_up_to_the_exponent(
    value: str, currency: str, amount: str, minor: int
) -> None:
    assert _money(value, currency) == Money(amount=amount, minor=minor, currency=currency)


def test_float_noise_beyond_fifteen_digits_is_dropped_before_rounding() -> None:
    # 1.005 printed by a float-computing producer; rounding it unread would give 1.00.
    assert _money("1.00499999999999989", "EUR").amount == "1.01"


def test_unknown_currency_keeps_recognized_digits_and_has_no_minor() -> None:
    assert _money("12.3456", "XYZ") == Money(amount="12.3456", minor=None, currency="XYZ")


def test_missing_currency_keeps_recognized_digits() -> None:
    assert _money("1250.0", None) == Money(amount="1250", minor=None, currency=None)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e15", "1e-16", "1e999999999"])
def test_unreadable_numbers_are_refused(value: str) -> None:
    assert read_number(Decimal(value)) is None


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e15", "-999999999999999.995"])
def test_unreadable_amounts_are_refused_in_a_known_currency(value: str) -> None:
    assert denomination("EUR").amount(Decimal(value)) is None


def test_negligible_amount_rounds_to_zero_in_a_known_currency() -> None:
    assert _money("1e-20", "EUR") == Money(amount="0.00", minor=0, currency="EUR")


def test_zero_with_any_exponent_reads_as_zero() -> None:
    assert str(read_number(Decimal("-0E-999999"))) == "0"


@pytest.mark.parametrize(
    ("value", "text"),
    [("100", "100"), ("1E+2", "100"), ("19.000", "19"), ("0.0000001", "0.0000001")],
)
def test_decimal_text_has_no_exponent_or_trailing_zeros(value: str, text: str) -> None:
    assert decimal_text(Decimal(value)) == text
