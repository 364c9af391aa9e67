"""The console's activity arithmetic: lag buckets, percentiles, callback hosts."""

from __future__ import annotations

import math

import pytest

from service.domain.activity import (
    LAST_LAG_BUCKET,
    bucket_upper_ms,
    callback_host,
    lag_bucket,
    lag_histogram,
    merge_counts,
    percentile,
)


@pytest.mark.parametrize("lag_ms", [1.5, 3, 10, 99, 250, 1000, 12_345, 3_600_000])
def test_a_lag_lands_in_a_bucket_at_most_19_percent_above_it(lag_ms: float) -> None:
    upper = bucket_upper_ms(lag_bucket(lag_ms))
    assert lag_ms <= upper < lag_ms * 2 ** (1 / 4) + 1e-9


@pytest.mark.parametrize("lag_ms", [0, 0.5, 1, -20, math.nan])
def test_no_lag_and_nonsense_land_in_the_first_bucket(lag_ms: float) -> None:
    assert lag_bucket(lag_ms) == 0


def test_a_lag_of_weeks_lands_in_the_last_bucket() -> None:
    assert lag_bucket(86_400_000 * 60) == LAST_LAG_BUCKET


def test_percentiles_of_a_histogram_are_bucket_upper_bounds() -> None:
    histogram = {lag_bucket(100): 98, lag_bucket(5000): 2}
    assert percentile(histogram, 0.5) == bucket_upper_ms(lag_bucket(100))
    assert percentile(histogram, 0.99) == bucket_upper_ms(lag_bucket(5000))


def test_an_empty_histogram_has_no_percentile() -> None:
    assert percentile({}, 0.5) is None


def test_minute_hashes_add_up_and_give_their_lag_histogram() -> None:
    merged = merge_counts([{"lag:4": 2, "entered:delivered": 1}, {"lag:4": 1, "lag:x": 9}])
    assert merged["entered:delivered"] == 1
    assert lag_histogram(merged) == {4: 3}


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://erp.example.com/hooks/ocr?x=1", "erp.example.com"),
        ("http://user:pw@10.0.0.7:8080/h", "10.0.0.7:8080"),
        ("http://[::1]:9000/h", "[::1]:9000"),
        ("http://[::1/h", "(invalid URL)"),
    ],
)
def test_a_callback_url_belongs_to_its_host_and_port(url: str, host: str) -> None:
    assert callback_host(url) == host
