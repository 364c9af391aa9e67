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


def is_iso_currency(code: str) -> bool:
    """Whether a code is in the current ISO 4217 table."""
    return code in iso4217.Currency.__members__


class Denomination:
    """Turns read numbers into ``Money`` of one currency (or of none, when unknown or missing)."""

    __slots__ = ("_quantum", "_scale", "code", "exponent", "minor_unit")

    def __init__(self, code: str | None, exponent: int | None) -> None:
        self.code = code
        self.exponent = exponent
        self.minor_unit = Decimal(1).scaleb(-(_DEFAULT_EXPONENT if exponent is None else exponent))
        self._quantum = Decimal(1).scaleb(-exponent) if exponent is not None else None
        self._scale = Decimal(10) ** exponent if exponent is not None else None

    def round(self, value: Decimal) -> Decimal:
        """A read number rounded to the currency's exponent (unchanged when it has none)."""
        if self._quantum is None:
            return value
        rounded = _ROUND.quantize(value, self._quantum)
        return rounded if rounded else abs(rounded)  # no "-0.00" on the wire

    def money(self, rounded: Decimal) -> Money:
        """``Money`` of a value already passed through ``round``."""
        if self._scale is None:
            return Money(amount=decimal_text(rounded), minor=None, currency=self.code)
        return Money(amount=str(rounded), minor=int(rounded * self._scale), currency=self.code)


@functools.lru_cache(maxsize=512)
def denomination(code: str | None) -> Denomination:
    """The ``Denomination`` of a currency code as recognized (``None`` when missing)."""
    return Denomination(code, None if code is None else currency_exponent(code))
