"""Charts for the operators' console, drawn on the server as inline SVG.

Why SVG from Python rather than a chart library in the browser: the console works without
JavaScript (and under a strict Content-Security-Policy), ships no front-end build or third-party
assets, and a page stays plain HTML that tests can parse. The page prints the exact numbers beside
every chart, so a chart only has to be glanceable: compact numbers, no gridlines, and native
``<title>`` tooltips as the only interaction.

Colours are left to the page's stylesheet (classes ``bar``, ``axis``, ``label``, ``limit`` and
``currentColor``); sizes are attributes, so an unstyled chart is still readable. Every function
returns ``Markup`` for Jinja's autoescape to embed as is, so every text taken from the arguments is
escaped here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from itertools import pairwise

from markupsafe import Markup

NO_VALUE = "\u2013"  # an en dash: "no value", unlike the minus sign of "-3"
# (suffix, size): each unit serves until the shown number reaches the size of the next.
_Units = tuple[tuple[str, float], ...]
_NUMBER_UNITS: _Units = (("", 1.0), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12))
_DURATION_UNITS: _Units = (("ms", 1.0), ("s", 1e3), ("min", 6e4), ("h", 3.6e6), ("d", 8.64e7))
_FONT = 10
_PAD = 16  # above a column plot for its scale, below it for the time labels
_ROW = 24
_EDGE = 4  # above the first and below the last row of a bar list
_BAR = 16
_VALUE_ROOM = 56  # after the longest bar, for its value


def _one_decimal(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")


def _compact(value: float, units: _Units) -> tuple[str, str]:
    magnitude = abs(value)
    for (suffix, size), (_, bigger) in pairwise((*units, ("", math.inf))):
        shown = _one_decimal(magnitude / size)
        # Compared after rounding, so 999.96 reads "1k" rather than "1000".
        if float(shown) * size < bigger:
            return ("-" if value < 0 and shown != "0" else "") + shown, suffix
    raise AssertionError("the last unit has no ceiling")


def format_number(value: float) -> str:
    """``value`` in at most four characters or so: "12.5", "1.2k", "1.5M", "2.5G", "10T".

    One decimal at most, without a trailing ".0"; nan and infinities read an en dash.
    """
    if not math.isfinite(value):
        return NO_VALUE
    shown, suffix = _compact(value, _NUMBER_UNITS)
    return shown + suffix


def format_ms(ms: float | None) -> str:
    """A duration given in milliseconds, in the largest unit that keeps it at least 1:
    "850 ms", "1.5 s", "1.5 min", "2 h", "3 d"; None (or nan) reads an en dash."""
    if ms is None or not math.isfinite(ms):
        return NO_VALUE
    shown, unit = _compact(ms, _DURATION_UNITS)
    return f"{shown} {unit}"


def _with_unit(text: str, unit: str) -> str:
    return f"{text} {unit}" if unit else text


def _clean(value: float) -> float:
    # A rate or count below zero, or a missing (nan) sample, has nothing to draw.
    return float(value) if math.isfinite(value) and value > 0 else 0.0


# Markup(...).format() escapes every argument that is not Markup already: texts from the caller
# go through markupsafe.escape on their way in, and the helpers' own Markup goes in untouched.
def _text(x: float, y: float, text: str, anchor: str = "start", tooltip: str = "") -> Markup:
    hint = Markup("<title>{}</title>").format(tooltip) if tooltip else Markup()
    return Markup(
        '<text class="label" x="{}" y="{}" font-size="{}" text-anchor="{}" fill="currentColor">'
        "{}{}</text>"
    ).format(_one_decimal(x), _one_decimal(y), _FONT, anchor, text, hint)


def _rect(x: float, y: float, width: float, height: float, tooltip: str) -> Markup:
    return Markup(
        '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="currentColor">'
        "<title>{}</title></rect>"
    ).format(*map(_one_decimal, (x, y, width, height)), tooltip)


def _line(cls: str, x1: float, y1: float, x2: float, y2: float, dashed: bool = False) -> Markup:
    dash = Markup(' stroke-dasharray="4 3"') if dashed else Markup()
    return Markup(
        '<line class="{}" x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor"{}/>'
    ).format(cls, *map(_one_decimal, (x1, y1, x2, y2)), dash)


def _svg(key: object, title: str, width: float, height: float, body: list[Markup]) -> Markup:
    # Derived from the arguments rather than a counter: the same chart renders the same bytes
    # (cacheable, easy to test) while two different charts on one page get different ids.
    chart_id = "chart-" + hashlib.sha1(repr(key).encode(), usedforsecurity=False).hexdigest()[:10]
    w, h = _one_decimal(width), _one_decimal(height)
    return Markup(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        'role="img" aria-labelledby="{id}"><title id="{id}">{title}</title>{body}</svg>'
    ).format(w=w, h=h, id=chart_id, title=title, body=Markup().join(body))


def _no_data(key: object, title: str, width: float, height: float) -> Markup:
    return _svg(key, title, width, height, [_text(width / 2, height / 2 + 3, "no data", "middle")])


def _length(value: float, top: float, room: float) -> float:
    # At least 1 px: on an ops chart "a few" must never look like "none".
    return round(max(value / top * room, 1.0), 1) if value > 0 else 0.0


def column_chart(
    values: Sequence[float],
    *,
    title: str,
    start_label: str,
    end_label: str,
    unit: str = "",
    limit: float | None = None,
    limit_label: str = "",
    width: int = 480,
    height: int = 120,
) -> Markup:
    """A time series as one column per value, oldest on the left, under ``title`` (for screen
    readers and the tooltip).

    The scale runs from 0 to the largest value or ``limit`` (at least 1, so an all-zero series
    draws a bare baseline) and its top is printed top-left with ``unit``. Zero values keep their
    slot but draw nothing; negative and non-finite values count as zero. ``limit`` (an SLO, a
    quota) draws a dashed ``line.limit`` labelled ``limit_label``. No values: "no data".
    """
    key = (title, list(values), start_label, end_label, unit, limit, limit_label, width, height)
    if not values:
        return _no_data(key, title, width, height)
    clean = [_clean(v) for v in values]
    shown_limit = max(limit, 0.0) if limit is not None and math.isfinite(limit) else None
    top = max(*clean, shown_limit or 0.0, 1.0)
    base, room = height - _PAD, height - 2 * _PAD
    slot = width / len(clean)
    gap = slot * 0.2
    body = [
        _text(0, _PAD - 5, _with_unit(format_number(top), unit)),
        _line("axis", 0, base, width, base),
    ]
    for i, value in enumerate(clean):
        if bar := _length(value, top, room):
            tooltip = _with_unit(format_number(value), unit)
            body.append(_rect(i * slot + gap / 2, base - bar, slot - gap, bar, tooltip))
    if shown_limit is not None:
        y = base - shown_limit / top * room
        body.append(_line("limit", 0, y, width, y, dashed=True))
        if limit_label:
            body.append(_text(width, y - 3, limit_label, "end"))
    body += [_text(0, height - 4, start_label), _text(width, height - 4, end_label, "end")]
    return _svg(key, title, width, height, body)


def bar_list(
    items: Sequence[tuple[str, float]], *, title: str, unit: str = "", width: int = 480
) -> Markup:
    """One horizontal bar per ``(label, value)``, in the given order: the label on the left, the
    bar proportional to value / the largest value (at least 1), the value with ``unit`` after it.

    The height grows by 24 px a row; a label too long for its column is cut with "…" and shown
    whole as its tooltip. Negative and non-finite values count as zero. No items: "no data".
    """
    key = (title, list(items), unit, width)
    if not items:
        return _no_data(key, title, width, _ROW + 2 * _EDGE)
    clean = [(label, _clean(value)) for label, value in items]
    top = max(*(value for _, value in clean), 1.0)
    label_room = width * 0.3
    room = max(width - label_room - _VALUE_ROOM, 0.0)
    max_chars = max(int(label_room / (_FONT * 0.6)), 4)  # 0.6 em: an average glyph's width
    body: list[Markup] = []
    for i, (label, value) in enumerate(clean):
        middle = _EDGE + i * _ROW + _ROW / 2
        cut = len(label) > max_chars
        shown = label[: max_chars - 1] + "…" if cut else label
        body.append(_text(0, middle + 3, shown, tooltip=label if cut else ""))
        formatted = _with_unit(format_number(value), unit)
        if bar := _length(value, top, room):
            body.append(_rect(label_room, middle - _BAR / 2, bar, _BAR, formatted))
        body.append(_text(label_room + bar + 4, middle + 3, formatted))
    return _svg(key, title, width, len(clean) * _ROW + 2 * _EDGE, body)
