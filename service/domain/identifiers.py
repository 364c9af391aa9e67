"""Checks of printed identifiers: IBAN, BIC and country codes (memoized: sellers recur)."""

from __future__ import annotations

import functools
from typing import Final

import pycountry
import schwifty

# Monite's AllowedCountries adds these non-ISO codes to ISO 3166-1 alpha-2.
_MONITE_EXTRA_COUNTRIES: Final = frozenset({"IC", "EA", "AN"})
_COUNTRIES: Final = frozenset(c.alpha_2 for c in pycountry.countries) | _MONITE_EXTRA_COUNTRIES


@functools.lru_cache(maxsize=4096)
def iban_is_valid(iban: str) -> bool:
    """Country length and mod-97 check of a compact, upper-case IBAN."""
    try:
        schwifty.IBAN(iban)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def bic_is_valid(bic: str) -> bool:
    """Structure and country check of a compact, upper-case BIC."""
    try:
        schwifty.BIC(bic)
    except ValueError:
        return False
    return True


def is_known_country(code: str) -> bool:
    """Whether an upper-case code is ISO 3166-1 alpha-2 or one of Monite's extras."""
    return code in _COUNTRIES
