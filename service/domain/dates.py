"""Reading printed dates: ISO first, then the common national forms, never a guess."""

from __future__ import annotations

import re
from datetime import date
from typing import Final

from service.domain.schema import WarningCode

_MONTHS: Final = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_YEAR_FIRST: Final = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_DAY_DOT_MONTH: Final = re.compile(r"(\d{1,2})\.\s?(\d{1,2})\.\s?(\d{4})")
_DAY_OR_MONTH_FIRST: Final = re.compile(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})")
_DAY_NAMED_MONTH: Final = re.compile(r"(\d{1,2})\.?[\s-]+([A-Za-z]{3,9})\.?,?[\s-]+(\d{4})")
_NAMED_MONTH_DAY: Final = re.compile(r"([A-Za-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})")


def parse_date(text: str) -> tuple[date | None, WarningCode | None]:
    """A calendar date in one of the common printed forms, or ``None`` with the reason.

    ``YYYY-MM-DD`` (and ``/`` or ``.`` separators), ``DD.MM.YYYY``, ``DD/MM/YYYY`` or ``MM/DD/YYYY``
    when only one reading is a valid date, and English month names. ``03/04/2026`` could be either
    month first: it is ``date_ambiguous``, never a guess.
    """
    text = text.strip()
    if len(text) >= 10 and text[4] == "-" and text[7] == "-" and text[10:11] in ("", "T", " "):
        try:
            return date.fromisoformat(text[:10]), None
        except ValueError:
            return None, "date_unparseable"
    if match := _YEAR_FIRST.fullmatch(text):
        year, month, day = (int(g) for g in match.groups())
        return _calendar(year, month, day)
    if match := _DAY_DOT_MONTH.fullmatch(text):
        day, month, year = (int(g) for g in match.groups())
        return _calendar(year, month, day)
    if match := _DAY_OR_MONTH_FIRST.fullmatch(text):
        first, second, year = (int(g) for g in match.groups())
        readings = {(m, d) for m, d in ((second, first), (first, second)) if m <= 12}
        if len(readings) > 1:
            return None, "date_ambiguous"
        return _calendar(year, *readings.pop()) if readings else (None, "date_unparseable")
    if match := _DAY_NAMED_MONTH.fullmatch(text):
        day_text, month_name, year_text = match.groups()
        return _named(year_text, month_name, day_text)
    if match := _NAMED_MONTH_DAY.fullmatch(text):
        month_name, day_text, year_text = match.groups()
        return _named(year_text, month_name, day_text)
    return None, "date_unparseable"


def _named(year: str, month_name: str, day: str) -> tuple[date | None, WarningCode | None]:
    month = _MONTHS.get(month_name.lower())
    return (None, "date_unparseable") if month is None else _calendar(int(year), month, int(day))


def _calendar(year: int, month: int, day: int) -> tuple[date | None, WarningCode | None]:
    try:
        return date(year, month, day), None
    except ValueError:
        return None, "date_unparseable"
