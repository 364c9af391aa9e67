"""Exact money: recognized numbers as JSON text, ISO 4217 exponents, rounding, minor units.

Numbers arrive as the text of the JSON number, never as floats. Monite serializes binary floats,
so a value may carry float noise past its 15th significant digit (``0.30000000000000004``); a
double holds 15 significant digits faithfully, so numbers are read at that precision first, and
money is then rounded half-up to the currency's exponent from the ``iso4217`` package (the
maintained ISO 4217 table, not a hand-written one).

Most recognized amounts have at most 15 digits and no more decimals than their currency: those
are read with integer arithmetic on the text, which gives the same result as ``Decimal`` at a
fraction of the cost; every other number goes through ``Decimal``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Final, Protocol

import iso4217

from service.domain.schema import Money

SIGNIFICANT_DIGITS: Final = 15
# Recognized values lie within ±10**15 and beyond 10**-15: others are misreads, and the bound
# keeps a hostile exponent (1e999999999) from turning into a billion-character string.
MAX_ADJUSTED_EXPONENT: Final = 14
MIN_ADJUSTED_EXPONENT: Final = -15
# The tolerance of sum checks when the currency has no known exponent: most currencies have 2.
_DEFAULT_EXPONENT: Final = 2

_NULL: Final = b"null"
_READ: Final = Context(prec=SIGNIFICANT_DIGITS, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])
_ZERO: Final = Decimal(0)

# A value that sums and compares: minor units in a known currency, the exact decimal otherwise.
Value = int | Decimal


class UnreadableNumberError(ValueError):
    """A recognized number that is no amount: not finite, or 10**15 and beyond."""


def read_number(value: Decimal) -> Decimal | None:
    """A recognized number at 15 significant digits; ``None`` if not finite or out of range."""
    if not value.is_finite():
        return None
    if not value:
        return _ZERO  # also folds -0 and 0E-999999
    if not MIN_ADJUSTED_EXPONENT <= value.adjusted() <= MAX_ADJUSTED_EXPONENT:
        return None
    return _READ.plus(value)


def read_text(text: bytes) -> Decimal | None:
    """``read_number`` of a JSON number's text; ``None`` also if it is no number at all."""
    try:
        value = Decimal(text.decode())
    except InvalidOperation:
        return None
    return read_number(value)


def decimal_text(value: Decimal) -> str:
    """Plain decimal notation without exponent or trailing zeros (``"19"``, ``"7.7"``)."""
    text = format(value.normalize(_READ), "f")
    return "0" if text == "-0" else text


def currency_exponent(code: str) -> int | None:
    """The ISO 4217 exponent of a currency code, or ``None`` if unknown or without minor unit."""
    try:
        exponent: int | None = iso4217.Currency(code).exponent
    except ValueError:
        return None
    return exponent


class Denomination(Protocol):
    """Turns recognized numbers into ``Money`` of one currency, and sums them for checks."""

    @property
    def code(self) -> str | None:
        """The currency code as recognized (upper-case), or ``None`` when missing."""

    @property
    def exponent(self) -> int | None:
        """The ISO 4217 exponent, or ``None`` when the currency is unknown or missing."""

    @property
    def minor_unit(self) -> Value:
        """The rounding tolerance of one summed value, in the unit of ``value``."""

    def money(self, text: bytes) -> Money | None:
        """``Money`` of a JSON number's text, ``None`` for ``null``.

        Raises ``UnreadableNumberError`` if the number is not a readable amount.
        """

    def value(self, money: Money) -> Value:
        """The value of ``money`` (made by this denomination) for sums and comparisons."""

    def total(self, moneys: Sequence[Money | None]) -> Value | None:
        """The sum of the values of ``moneys``; ``None`` if one is missing."""

    def text(self, value: Value) -> str:
        """A value (or sum of values) as an amount string, for messages."""

    def difference(self, minuend: Money, subtrahend: Money) -> Money | None:
        """``minuend - subtrahend`` rounded like any amount; ``None`` if out of range."""


class _Minor:
    """A currency with an ISO 4217 exponent: amounts are exact integers of minor units."""

    __slots__ = ("_limit", "_pads", "_scales", "_zero", "code", "exponent")

    minor_unit: Final = 1

    def __init__(self, code: str, exponent: int) -> None:
        self.code = code
        self.exponent = exponent
        # Indexed by the number of decimals of a JSON number (0: it has no decimal point).
        self._pads = (
            "." + "0" * exponent if exponent else "",
            *("0" * (exponent - n) for n in range(1, exponent + 1)),
        )
        self._scales = tuple(10 ** (exponent - n) for n in range(exponent + 1))
        self._limit = 10 ** (MAX_ADJUSTED_EXPONENT + 1 + exponent)
        self._zero = self._minor(0)

    def money(self, text: bytes) -> Money | None:
        """``Money`` of a JSON number's text rounded half-up, ``None`` for ``null``."""
        # Printed prices mostly have exactly the currency's decimals: the text is the amount.
        if self.exponent < len(text) <= SIGNIFICANT_DIGITS + 1 and text[-1 - self.exponent] == 46:
            try:
                minor = int(text.replace(b".", b""))
            except ValueError:  # exponent notation
                return self._decimal(text)
            return (
                Money(amount=text.decode(), minor=minor, currency=self.code)
                if minor
                else self._zero
            )
        if text == _NULL:
            return None
        whole, _, decimals = text.partition(b".")
        count = len(decimals)
        # At most 15 digits: the text is its own 15-digit reading, and below 10**15.
        if len(whole) + count > SIGNIFICANT_DIGITS:
            return self._decimal(text)
        try:
            units = int(whole + decimals)
        except ValueError:  # exponent notation
            return self._decimal(text)
        if not units:
            return self._zero  # no "-0.00" on the wire
        if count > self.exponent:
            return self._minor(_round_half_up(units, count - self.exponent))
        # Fewer decimals than the currency (``10.0``): the padded text is the amount.
        return Money(
            amount=text.decode() + self._pads[count],
            minor=units * self._scales[count],
            currency=self.code,
        )

    def value(self, money: Money) -> Value:
        """The minor units of ``money``."""
        return money.minor or 0  # every Money of a known currency has them

    def total(self, moneys: Sequence[Money | None]) -> Value | None:
        """The sum of the minor units of ``moneys``; ``None`` if one is missing."""
        minors = [money.minor or 0 for money in moneys if money is not None]
        return sum(minors) if len(minors) == len(moneys) else None

    def text(self, value: Value) -> str:
        """Minor units as an amount string."""
        return self._text(int(value))

    def difference(self, minuend: Money, subtrahend: Money) -> Money | None:
        """``minuend - subtrahend``; ``None`` from 10**15 on, like any recognized amount."""
        return self._bounded(int(self.value(minuend)) - int(self.value(subtrahend)))

    def _decimal(self, text: bytes) -> Money:
        """The general case: read at 15 digits, then round half-up to the exponent.

        Values too small to matter round to zero instead of being refused.
        """
        try:
            value = _READ.plus(Decimal(text.decode()))
        except InvalidOperation:  # no number at all (JSON never gets here), or a signalling NaN
            raise UnreadableNumberError(text) from None
        if value.is_finite() and value.adjusted() <= MAX_ADJUSTED_EXPONENT:
            rounded = value.scaleb(self.exponent).to_integral_value(ROUND_HALF_UP)
            if money := self._bounded(int(rounded)):
                return money
        raise UnreadableNumberError(text)

    def _bounded(self, minor: int) -> Money | None:
        return None if abs(minor) >= self._limit else self._minor(minor)

    def _minor(self, minor: int) -> Money:
        return Money(amount=self._text(minor), minor=minor, currency=self.code)

    def _text(self, minor: int) -> str:
        if not self.exponent:
            return str(minor)
        # Slicing the padded digits: a format spec built per call (``:0{exponent}d``) is slower.
        digits = str(abs(minor)).rjust(self.exponent + 1, "0")
        return f"{'-' if minor < 0 else ''}{digits[: -self.exponent]}.{digits[-self.exponent :]}"


class _Unrounded:
    """A currency unknown or missing: amounts are kept as read, without minor units."""

    __slots__ = ("code",)

    exponent: int | None = None
    minor_unit: Value = Decimal(1).scaleb(-_DEFAULT_EXPONENT)

    def __init__(self, code: str | None) -> None:
        self.code = code

    def money(self, text: bytes) -> Money | None:
        """``Money`` of the number read at 15 digits, ``None`` for ``null``."""
        if text == _NULL:
            return None
        value = read_text(text)
        if value is None:
            raise UnreadableNumberError(text)
        return self._money(value)

    def value(self, money: Money) -> Value:
        """The exact decimal of ``money``."""
        return Decimal(money.amount)

    def total(self, moneys: Sequence[Money | None]) -> Value | None:
        """The exact sum of ``moneys``; ``None`` if one is missing."""
        values = [Decimal(money.amount) for money in moneys if money is not None]
        return sum(values, _ZERO) if len(values) == len(moneys) else None

    def text(self, value: Value) -> str:
        """A decimal as plain text."""
        return decimal_text(Decimal(value))

    def difference(self, minuend: Money, subtrahend: Money) -> Money | None:
        """``minuend - subtrahend`` read at 15 digits; ``None`` if out of range."""
        value = read_number(Decimal(minuend.amount) - Decimal(subtrahend.amount))
        return None if value is None else self._money(value)

    def _money(self, value: Decimal) -> Money:
        return Money(amount=decimal_text(value), minor=None, currency=self.code)


def percent_of(minor: int, rate: str) -> int:
    """``rate`` percent (a decimal string, ``"7.7"``) of ``minor`` units, rounded half-up.

    Integers only: the rate's digits scale the product, so no value passes through a float.
    """
    whole, _, decimals = rate.partition(".")
    return _round_half_up(minor * int(whole + decimals), len(decimals) + 2)


def _round_half_up(units: int, digits: int) -> int:
    """``units`` divided by ``10**digits``, ties away from zero (``Decimal``'s ROUND_HALF_UP)."""
    divisor: int = 10**digits
    quotient, remainder = divmod(abs(units), divisor)
    if 2 * remainder >= divisor:
        quotient += 1
    return -quotient if units < 0 else quotient


@functools.lru_cache(maxsize=512)
def denomination(code: str | None) -> Denomination:
    """The ``Denomination`` of a currency code as recognized (``None`` when missing)."""
    exponent = None if code is None else currency_exponent(code)
    if code is None or exponent is None:
        return _Unrounded(code)
    return _Minor(code, exponent)
