"""Exact money: reading recognized numbers, ISO 4217 exponents, rounding, minor units."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.money import (
    UnreadableNumberError,
    currency_exponent,
    decimal_text,
    denomination,
    read_number,
    read_text,
)
from service.domain.schema import Money


def _money(value: str, currency: str | None) -> Money:
    money = denomination(currency).money(value.encode())
    assert money is not None
    return money


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


@pytest.mark.parametrize("text", [b"lots", b"sNaN", b"1e15"])
def test_unreadable_texts_are_refused(text: bytes) -> None:
    assert read_text(text) is None


@pytest.mark.parametrize(
    "value", ["NaN", "sNaN", "Infinity", "1e15", "-999999999999999.995", "1000000000000000", "x"]
)
def test_unreadable_amounts_are_refused_in_a_known_currency(value: str) -> None:
    with pytest.raises(UnreadableNumberError):
        denomination("EUR").money(value.encode())


@pytest.mark.parametrize("currency", ["EUR", "XYZ", None])
def test_null_is_no_amount(currency: str | None) -> None:
    assert denomination(currency).money(b"null") is None


def test_unreadable_amount_is_refused_without_a_currency() -> None:
    with pytest.raises(UnreadableNumberError):
        denomination(None).money(b"1e300")


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


@pytest.mark.parametrize("value", ["-0.0", "-0", "0.000", "-0.001"])
def test_negative_zero_is_plain_zero(value: str) -> None:
    assert _money(value, "EUR") == Money(amount="0.00", minor=0, currency="EUR")


@pytest.mark.parametrize(("value", "amount"), [("1.5e2", "150.00"), ("-2E-1", "-0.20")])
def test_exponent_notation_is_read_exactly(value: str, amount: str) -> None:
    assert _money(value, "EUR").amount == amount


def test_sixteen_digit_amount_is_read_at_fifteen_digits() -> None:
    assert _money("123456789012345.6", "EUR").amount == "123456789012346.00"


_FIFTEEN_DIGITS = Context(prec=15, rounding=ROUND_HALF_EVEN)
# Texts as JSON writes numbers: short and long decimals, integers, exponents, float noise.
_json_numbers = st.one_of(
    st.decimals(min_value=-(10**16), max_value=10**16, places=4).map(str),
    st.decimals(min_value=-(10**6), max_value=10**6, places=17).map(str),
    st.integers(min_value=-(10**17), max_value=10**17).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


@given(_json_numbers, st.sampled_from(["EUR", "JPY", "KWD", "CLF"]))
def test_money_equals_decimal_read_at_fifteen_digits_rounded_half_up(
    text: str, currency: str
) -> None:
    exponent = currency_exponent(currency)
    assert exponent is not None
    read = _FIFTEEN_DIGITS.plus(Decimal(text))
    if abs(read) >= 10**15:
        with pytest.raises(UnreadableNumberError):
            denomination(currency).money(text.encode())
        return
    money = denomination(currency).money(text.encode())
    expected = read.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)
    expected = expected if expected else abs(expected)
    assert money == Money(
        amount=str(expected), minor=int(expected.scaleb(exponent)), currency=currency
    )


def test_total_is_none_when_an_amount_is_missing() -> None:
    unit = denomination("EUR")
    assert unit.total([_money("1.5", "EUR"), None]) is None


def test_total_of_a_known_currency_is_in_minor_units() -> None:
    unit = denomination("EUR")
    assert unit.total([_money("1.5", "EUR"), _money("0.25", "EUR")]) == 175


def test_total_of_an_unknown_currency_is_the_exact_sum() -> None:
    unit = denomination("XYZ")
    assert unit.total([_money("0.1", "XYZ"), _money("0.2", "XYZ")]) == Decimal("0.3")


def test_difference_is_exact_and_rounded_like_an_amount() -> None:
    unit = denomination("EUR")
    due = unit.difference(_money("100", "EUR"), _money("30.5", "EUR"))
    assert due == Money(amount="69.50", minor=6950, currency="EUR")


def test_difference_beyond_the_range_is_refused() -> None:
    unit = denomination("EUR")
    assert unit.difference(_money("999999999999999", "EUR"), _money("-1", "EUR")) is None
