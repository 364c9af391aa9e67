"""The console's SVG charts: geometry read back from the parsed SVG, compact numbers, escaping."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from service.console.charts import bar_list, column_chart, format_ms, format_number

SVG = "{http://www.w3.org/2000/svg}"
EVIL = "<script>alert(1)</script>"
EN_DASH = "\u2013"
# Room kept above a column plot for the scale and below it for the time labels.
MARGIN = 16


def columns(
    values: list[float],
    *,
    unit: str = "",
    limit: float | None = None,
    limit_label: str = "",
    height: int = 120,
) -> ET.Element:
    chart = column_chart(
        values,
        title="Jobs",
        start_label="-1 h",
        end_label="now",
        unit=unit,
        limit=limit,
        limit_label=limit_label,
        height=height,
    )
    return parse(chart)


def parse(chart: str) -> ET.Element:
    # The charts' own output, not untrusted input: the stdlib parser is fine here.
    return ET.fromstring(chart)  # noqa: S314


def rects(svg: ET.Element) -> list[dict[str, float]]:
    return [
        {k: float(rect.attrib[k]) for k in ("x", "y", "width", "height")}
        for rect in svg.findall(f"{SVG}rect")
    ]


def texts(svg: ET.Element) -> list[str]:
    return [text.text or "" for text in svg.findall(f"{SVG}text")]


def line(svg: ET.Element, cls: str) -> ET.Element:
    (found,) = [e for e in svg.findall(f"{SVG}line") if e.get("class") == cls]
    return found


def test_empty_series_renders_no_data_and_no_bars() -> None:
    svg = columns([])
    assert rects(svg) == []
    assert texts(svg) == ["no data"]
    assert (svg.get("width"), svg.get("height"), svg.get("viewBox")) == (
        "480",
        "120",
        "0 0 480 120",
    )


def test_one_point_fills_the_chart_height() -> None:
    svg = columns([7], height=200)
    (bar,) = rects(svg)
    baseline = float(line(svg, "axis").attrib["y1"])
    assert baseline == 200 - MARGIN
    assert bar["y"] == MARGIN
    assert bar["y"] + bar["height"] == pytest.approx(baseline)


def test_column_heights_are_proportional_to_their_values() -> None:
    half, full = rects(columns([50, 100]))
    assert half["height"] == pytest.approx(full["height"] / 2)


def test_zero_values_draw_nothing_but_keep_their_slot_oldest_left() -> None:
    first, third = rects(columns([1, 0, 2]))
    slot = 480 / 3
    assert third["x"] - first["x"] == pytest.approx(2 * slot, abs=0.1)
    assert first["width"] == third["width"] < slot


def test_large_numbers_are_compact_on_the_scale() -> None:
    chart = column_chart([1e12, 5e11], title="Bytes", start_label="a", end_label="b")
    assert "1T" in texts(parse(chart))
    assert "e+" not in chart


def test_all_zero_series_draws_no_bars_and_does_not_divide_by_zero() -> None:
    svg = columns([0, 0, 0])
    assert rects(svg) == []
    assert line(svg, "axis").attrib["y1"] == str(120 - MARGIN)
    assert texts(svg)[0] == "1"


def test_negative_and_nan_values_count_as_zero() -> None:
    svg = columns([-5, math.nan, math.inf, 2])
    (bar,) = rects(svg)
    assert bar["x"] > 3 * 480 / 4
    assert texts(svg)[0] == "2"


def test_a_tiny_value_stays_visible_beside_a_huge_one() -> None:
    tiny, _ = rects(columns([1, 1_000_000]))
    assert tiny["height"] == 1


def test_limit_line_is_drawn_at_its_height() -> None:
    svg = columns([100, 50], limit=50, limit_label="SLO")
    limit = line(svg, "limit")
    _, half = rects(svg)
    assert float(limit.attrib["y1"]) == float(limit.attrib["y2"]) == pytest.approx(half["y"])
    assert limit.get("stroke-dasharray")
    assert "SLO" in texts(svg)


def test_a_limit_above_the_data_sets_the_scale() -> None:
    svg = columns([10], limit=20, unit="ms")
    (bar,) = rects(svg)
    assert bar["height"] == pytest.approx((120 - 2 * MARGIN) / 2)
    assert float(line(svg, "limit").attrib["y1"]) == MARGIN
    assert texts(svg)[0] == "20 ms"


def test_time_labels_sit_left_and_right() -> None:
    labels = {t.text: t for t in columns([1]).findall(f"{SVG}text")}
    assert (labels["-1 h"].get("x"), labels["-1 h"].get("text-anchor")) == ("0", "start")
    assert (labels["now"].get("x"), labels["now"].get("text-anchor")) == ("480", "end")


def test_every_column_has_its_value_with_unit_as_tooltip() -> None:
    svg = columns([1500, 3], unit="req")
    assert [r.findtext(f"{SVG}title") for r in svg.findall(f"{SVG}rect")] == ["1.5k req", "3 req"]


def test_titles_and_labels_are_escaped() -> None:
    charts = [
        column_chart(
            [1], title=EVIL, start_label=EVIL, end_label=EVIL, unit=EVIL, limit=1, limit_label=EVIL
        ),
        bar_list([(EVIL, 1), (EVIL * 5, 2)], title=EVIL, unit=EVIL),
        column_chart([], title=EVIL, start_label=EVIL, end_label=EVIL),
    ]
    for chart in charts:
        assert "<script" not in chart
        assert "&lt;script&gt;" in chart
        assert parse(chart).findtext(f"{SVG}title") == EVIL


@pytest.mark.parametrize(
    "chart",
    [
        column_chart([], title="t", start_label="a", end_label="b"),
        column_chart(
            [3, 0, 1], title="t", start_label="a", end_label="b", limit=2, limit_label="l"
        ),
        bar_list([], title="t"),
        bar_list([("a", 1), ("b & c", 2)], title="t", unit="ms"),
    ],
)
def test_output_is_well_formed_xml(chart: Markup) -> None:
    svg = parse(chart)
    assert svg.tag == f"{SVG}svg"
    assert svg.get("role") == "img"
    first = svg[0]
    assert first.tag == f"{SVG}title"
    assert first.get("id") == svg.get("aria-labelledby")


def test_every_chart_is_markup_for_jinja_autoescape() -> None:
    chart = column_chart([1], title="t", start_label="a", end_label="b")
    assert isinstance(chart, Markup)
    assert isinstance(bar_list([("a", 1)], title="t"), Markup)
    assert Markup("<div>{}</div>").format(chart).startswith("<div><svg ")


def test_chart_ids_are_deterministic_and_differ_between_charts() -> None:
    def chart_id(values: list[float]) -> str | None:
        return columns(values).get("aria-labelledby")

    assert chart_id([1, 2]) == chart_id([1, 2])
    assert chart_id([1, 2]) != chart_id([2, 1])
    assert re.fullmatch(r"chart-[0-9a-f]{10}", chart_id([1]) or "")


def test_colours_come_from_the_stylesheet_and_text_has_a_size() -> None:
    chart = column_chart([1, 2], title="t", start_label="a", end_label="b", limit=1)
    chart += bar_list([("a", 1)], title="t")
    assert "style=" not in chart
    assert set(re.findall(r'(?:fill|stroke)="([^"]*)"', chart)) == {"currentColor"}
    assert chart.count("<text ") == chart.count('font-size="10"')


def test_empty_bar_list_renders_no_data_and_no_bars() -> None:
    svg = parse(bar_list([], title="Errors"))
    assert rects(svg) == []
    assert texts(svg) == ["no data"]


def test_one_bar_gets_its_label_full_length_and_value() -> None:
    svg = parse(bar_list([("timeouts", 12)], title="Errors", unit="/h"))
    (bar,) = rects(svg)
    assert texts(svg) == ["timeouts", "12 /h"]
    value = svg.findall(f"{SVG}text")[1]
    assert float(value.attrib["x"]) == pytest.approx(bar["x"] + bar["width"] + 4)
    assert bar["x"] + bar["width"] <= 480 - 40  # still room for the value after it


def test_bar_widths_are_proportional_to_values() -> None:
    full, half, quarter = rects(parse(bar_list([("a", 400), ("b", 200), ("c", 100)], title="t")))
    assert half["width"] == pytest.approx(full["width"] / 2, abs=0.1)
    assert quarter["width"] == pytest.approx(full["width"] / 4, abs=0.1)
    assert full["x"] == half["x"] == quarter["x"]
    assert full["y"] < half["y"] < quarter["y"]


def test_bar_list_grows_24_px_a_row() -> None:
    one = parse(bar_list([("a", 1)], title="t"))
    three = parse(bar_list([("a", 1), ("b", 2), ("c", 3)], title="t"))
    assert float(three.attrib["height"]) - float(one.attrib["height"]) == 48


def test_bar_list_values_below_one_are_scaled_against_one() -> None:
    (small,) = rects(parse(bar_list([("a", 0.5)], title="t")))
    (full,) = rects(parse(bar_list([("a", 1)], title="t")))
    assert small["width"] == pytest.approx(full["width"] / 2, abs=0.1)


def test_bar_list_zero_negative_and_nan_draw_no_bar_but_keep_their_row() -> None:
    svg = parse(bar_list([("a", 0), ("b", -3), ("c", math.nan)], title="t"))
    assert rects(svg) == []
    assert texts(svg) == ["a", "0", "b", "0", "c", "0"]


def test_long_bar_labels_are_cut_and_kept_whole_as_tooltip() -> None:
    label = "callback-delivery-to-a-very-long-hostname.example.com"
    text = parse(bar_list([(label, 1)], title="t")).findall(f"{SVG}text")[0]
    assert text.text is not None
    assert text.text.endswith("…")
    assert len(text.text) < len(label)
    assert text.findtext(f"{SVG}title") == label


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0"),
        (7, "7"),
        (12.5, "12.5"),
        (0.04, "0"),
        (999, "999"),
        (999.96, "1k"),
        (1234, "1.2k"),
        (1_500_000, "1.5M"),
        (2.5e9, "2.5G"),
        (1e12, "1T"),
        (1e13, "10T"),
        (-1234, "-1.2k"),
        (-0.01, "0"),
        (math.nan, EN_DASH),
        (math.inf, EN_DASH),
        (-math.inf, EN_DASH),
    ],
)
def test_format_number(value: float, shown: str) -> None:
    assert format_number(value) == shown


@pytest.mark.parametrize(
    ("ms", "shown"),
    [
        (None, EN_DASH),
        (math.nan, EN_DASH),
        (0, "0 ms"),
        (850, "850 ms"),
        (12.5, "12.5 ms"),
        (1500, "1.5 s"),
        (59_999, "1 min"),
        (90_000, "1.5 min"),
        (7_200_000, "2 h"),
        (3 * 24 * 3_600_000, "3 d"),
        (400 * 24 * 3_600_000, "400 d"),
        (-1500, "-1.5 s"),
    ],
)
def test_format_ms(ms: float | None, shown: str) -> None:
    assert format_ms(ms) == shown
