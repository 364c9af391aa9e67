"""What the console's activity counts mean: minute buckets, lag histograms, callback hosts.

Pure. The store counts per minute in Redis hashes (``service.storage.activity``); a latency is
counted in a log-scale bucket, four per doubling, so that p50/p99 over an hour are two hash reads
away and within 19 % of the truth, whatever the volume (an exact percentile would need every
sample of the hour: millions at full speed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import urlsplit

MINUTE_MS: Final = 60_000
# Buckets per doubling of the latency: bucket i holds latencies up to 2 ** (i / 4) ms.
_PER_DOUBLING: Final = 4
# 2 ** (120 / 4) ms is about 12 days: anything slower lands in the last bucket.
LAST_LAG_BUCKET: Final = 120


def minute_of(ms: int) -> int:
    """The minute (since the epoch) a time in ms falls in: the activity hash it counts in."""
    return ms // MINUTE_MS


def lag_bucket(lag_ms: float) -> int:
    """The histogram bucket of a latency in ms (0 for anything up to 1 ms)."""
    if not lag_ms > 1:  # also NaN, which is no latency at all
        return 0
    return min(LAST_LAG_BUCKET, math.ceil(_PER_DOUBLING * math.log2(lag_ms)))


def bucket_upper_ms(bucket: int) -> float:
    """The largest latency a bucket holds, in ms: what a percentile falling in it reports."""
    return float(2.0 ** (bucket / _PER_DOUBLING))


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 < q ≤ 1) of a lag histogram, as its bucket's upper bound in ms; None
    when the histogram is empty."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_upper_ms(bucket)
    return bucket_upper_ms(max(histogram))


def merge_counts(hashes: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Several activity hashes (minutes) added up, field by field."""
    merged: dict[str, int] = {}
    for counts in hashes:
        for field, value in counts.items():
            merged[field] = merged.get(field, 0) + value
    return merged


def lag_histogram(counts: Mapping[str, int]) -> dict[int, int]:
    """The ``lag:<bucket>`` fields of an activity hash as a histogram."""
    found: dict[int, int] = {}
    for field, value in counts.items():
        kind, _, bucket = field.partition(":")
        if kind == "lag" and bucket.isdigit():
            found[int(bucket)] = found.get(int(bucket), 0) + value
    return found


def callback_host(url: str) -> str:
    """The receiver a callback URL belongs to: its host and port, without credentials or path
    (the console groups deliveries by it)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host
