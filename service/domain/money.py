"""Decimal money: reading recognized numbers, ISO 4217 exponents, rounding, minor units.

Numbers arrive as ``Decimal`` parsed from the JSON text, never as floats. Monite serializes binary
floats, so a value may carry float noise past its 15th significant digit (``0.30000000000000004``);
a double holds 15 significant digits faithfully, so numbers are read at that precision first, and
money is then rounded half-up to the currency's exponent from the ``iso4217`` package (the
maintained ISO 4217 table, not a hand-written one).
"""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Final

import iso4217

from service.domain.schema import Money

SIGNIFICANT_DIGITS: Final = 15
# Recognized values lie within ±10**15 and beyond 10**-15: others are misreads, and the bound
# keeps a hostile exponent (1e999999999) from turning into a billion-character string.
MAX_ADJUSTED_EXPONENT: Final = 14
MIN_ADJUSTED_EXPONENT: Final = -15
# The tolerance of sum checks when the currency has no known exponent: most currencies have 2.
_DEFAULT_EXPONENT: Final = 2

_READ: Final = Context(prec=SIGNIFICANT_DIGITS, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])
# Enough precision for any bounded value at the largest exponent, so quantize never overflows.
_ROUND: Final = Context(
    prec=SIGNIFICANT_DIGITS + 6, rounding=ROUND_HALF_UP, traps=[InvalidOperation]
)
_ZERO: Final = Decimal(0)


def read_number(value: Decimal) -> Decimal | None:
    """A recognized number at 15 significant digits; ``None`` if not finite or out of range."""
    if not value.is_finite():
        return None
    if not value:
        return _ZERO  # also folds -0 and 0E-999999
    if not MIN_ADJUSTED_EXPONENT <= value.adjusted() <= MAX_ADJUSTED_EXPONENT:
        return None
    return _READ.plus(value)


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


class Denomination:
    """Turns recognized numbers into ``Money`` of one currency (or of none: unknown or missing)."""

    __slots__ = ("_quantum", "_rounding", "code", "exponent", "minor_unit")

    def __init__(self, code: str | None, exponent: int | None) -> None:
        self.code = code
        self.exponent = exponent
        self.minor_unit = Decimal(1).scaleb(-(_DEFAULT_EXPONENT if exponent is None else exponent))
        self._quantum = None if exponent is None else Decimal(1).scaleb(-exponent)
        # Just enough digits for |value| < 10**15 at this exponent: quantize traps anything larger.
        self._rounding = Context(
            prec=MAX_ADJUSTED_EXPONENT + 1 + (exponent or 0),
            rounding=ROUND_HALF_UP,
            traps=[InvalidOperation],
        )

    def amount(self, value: Decimal) -> Decimal | None:
        """A recognized number rounded half-up to the exponent; ``None`` if unreadable.

        Without an exponent the number is only read (``read_number``). With one, values too
        small to matter round to zero instead of being refused.
        """
        if self._quantum is None:
            return read_number(value)
        try:
            rounded = self._rounding.quantize(_READ.plus(value), self._quantum)
        except InvalidOperation:  # infinite, or 10**15 and beyond
            return None
        if rounded.is_nan():
            return None
        return rounded if rounded else abs(rounded)  # no "-0.00" on the wire

    def money(self, amount: Decimal) -> Money:
        """``Money`` of a value returned by ``amount``."""
        if self._quantum is None:
            return Money(amount=decimal_text(amount), minor=None, currency=self.code)
        text = str(amount)  # plain notation: the exponent is fixed and at most 0
        return Money(amount=text, minor=int(text.replace(".", "")), currency=self.code)


@functools.lru_cache(maxsize=512)
def denomination(code: str | None) -> Denomination:
    """The ``Denomination`` of a currency code as recognized (``None`` when missing)."""
    return Denomination(code, None if code is None else currency_exponent(code))
