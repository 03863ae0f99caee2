"""A latency histogram with HDR precision: three significant digits from 1 µs to one hour, whatever the
distribution, in constant memory.

Layer: tools (leaf). Wraps ``hdrh`` (the HdrHistogram port, whose encoding is read by every HdrHistogram
tool) behind a typed interface that speaks seconds, so the rest of the tool never sees its units.
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

#: Recorded in microseconds: from 1 µs to one hour, three significant digits (relative error <= 0.1%).
_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_DIGITS = 3

#: The percentiles every summary reports, and the finer ladder of the percentile curve.
SUMMARY_PERCENTILES = (50.0, 90.0, 99.0, 99.9)
CURVE_PERCENTILES = (
    0.0,
    10.0,
    25.0,
    50.0,
    75.0,
    90.0,
    95.0,
    99.0,
    99.5,
    99.9,
    99.95,
    99.99,
    99.999,
    100.0,
)


class LatencyHistogram:
    """Latencies in seconds; values past an hour are recorded as an hour (and counted in ``clipped``)."""

    def __init__(self) -> None:
        self._hdr: Any = HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)
        self.clipped = 0

    def record(self, seconds: float) -> None:
        micros = max(_LOWEST_US, round(seconds * 1e6))
        if micros > _HIGHEST_US:
            self.clipped += 1
            micros = _HIGHEST_US
        self._hdr.record_value(micros)

    def add(self, other: LatencyHistogram) -> None:
        self._hdr.add(other._hdr)
        self.clipped += other.clipped

    @property
    def count(self) -> int:
        return int(self._hdr.get_total_count())

    def percentile(self, percent: float) -> float:
        """The latency at ``percent`` (0-100) in seconds: the highest value equivalent, at the histogram's
        precision, to the one that many recorded values do not exceed. 0.0 when empty."""
        if self.count == 0:
            return 0.0
        return float(self._hdr.get_value_at_percentile(percent)) / 1e6

    @property
    def max(self) -> float:
        return float(self._hdr.get_max_value()) / 1e6 if self.count else 0.0

    @property
    def min(self) -> float:
        return float(self._hdr.get_min_value()) / 1e6 if self.count else 0.0

    @property
    def mean(self) -> float:
        return float(self._hdr.get_mean_value()) / 1e6 if self.count else 0.0

    def summary_ms(self) -> dict[str, Any]:
        """Count, min, mean, p50/p90/p99/p99.9, max and the percentile curve, in milliseconds; ``hdr`` is
        the histogram in HdrHistogram's compressed encoding, for tools that merge or re-plot runs."""
        return {
            "count": self.count,
            "min": round(self.min * 1e3, 3),
            "mean": round(self.mean * 1e3, 3),
            **{f"p{p:g}": round(self.percentile(p) * 1e3, 3) for p in SUMMARY_PERCENTILES},
            "max": round(self.max * 1e3, 3),
            "curve": [[p, round(self.percentile(p) * 1e3, 3)] for p in CURVE_PERCENTILES],
            "clipped": self.clipped,
            "hdr": self._hdr.encode().decode() if self.count else "",
        }
