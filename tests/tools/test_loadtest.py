"""The load tool's own parts, without a server: the histogram, the arrival schedule, the mix, the engines'
timing and bounds, the report and the target check."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import math
import random
import time
from datetime import UTC, datetime

import pytest

from tools.loadtest import report
from tools.loadtest.__main__ import check, parser, rss_growth
from tools.loadtest.histogram import LatencyHistogram
from tools.loadtest.mix import DEFAULT_MIX, SCENARIOS, Mix
from tools.loadtest.recorder import CUT_OFF, DROPPED, Recorder
from tools.loadtest.runner import Limits, StatusLine, classify, closed_loop, open_loop
from tools.loadtest.schedule import Step, arrivals, expected_count, ramp, total_seconds
from tools.loadtest.target import RemoteTarget, check_target, is_loopback
from tools.sdk.errors import ApiError

# --- histogram ------------------------------------------------------------------------------------------


def exact(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def test_histogram_percentiles_of_a_uniform_distribution():
    histogram = LatencyHistogram()
    for micros in range(1, 100_001):  # 1 µs .. 100 ms, each once
        histogram.record(micros / 1e6)
    assert histogram.count == 100_000
    for percent, expected in ((50, 0.050), (90, 0.090), (99, 0.099), (99.9, 0.0999)):
        assert histogram.percentile(percent) == pytest.approx(expected, rel=1e-3)
    assert histogram.max == pytest.approx(0.1, rel=1e-3)
    assert histogram.min == pytest.approx(1e-6)
    assert histogram.mean == pytest.approx(0.05, rel=1e-3)


def test_histogram_percentiles_of_a_long_tailed_distribution():
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(0.02), 1.0) for _ in range(50_000)]  # median 20 ms, long tail
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    for percent in (50, 90, 99, 99.9, 100):
        # Three significant digits: within 0.1% of the exact order statistic (plus 1 µs of rounding).
        assert histogram.percentile(percent) == pytest.approx(exact(values, percent), rel=1e-3, abs=1e-6)


def test_histogram_merges_and_clips_past_an_hour():
    a, b = LatencyHistogram(), LatencyHistogram()
    a.record(0.001)
    b.record(0.003)
    b.record(7200.0)
    a.add(b)
    assert a.count == 3
    assert a.clipped == 1
    assert a.max == pytest.approx(3600, rel=1e-3)
    summary = a.summary_ms()
    assert summary["p50"] == pytest.approx(3.0, rel=1e-3)
    assert summary["hdr"]  # HdrHistogram's encoding, for other tools
    assert LatencyHistogram().summary_ms()["p99"] == 0.0


# --- arrival schedule -----------------------------------------------------------------------------------


def test_constant_rate_is_evenly_spaced_and_bounded():
    due = list(arrivals([Step(50, 2.0)]))
    assert len(due) == 100
    assert due[0] == 0.0
    assert max(due) < 2.0
    assert all(b - a == pytest.approx(0.02) for a, b in itertools.pairwise(due))


def test_stepped_ramp_carries_its_phase_across_steps():
    profile = ramp(10, 40, 4, 4.0)
    assert [s.rate for s in profile] == [10, 20, 30, 40]
    assert total_seconds(profile) == 4.0
    due = list(arrivals(profile))
    assert len(due) == pytest.approx(expected_count(profile), abs=4)
    per_second = [sum(1 for t in due if s <= t < s + 1) for s in range(4)]
    assert per_second == pytest.approx([10, 20, 30, 40], abs=1)
    gaps = [b - a for a, b in itertools.pairwise(due)]
    assert min(gaps) >= 1 / 40 - 1e-9  # no burst at a boundary
    assert max(gaps) <= 1 / 10 + 1e-9  # no hole either


def test_poisson_arrivals_have_the_mean_rate():
    due = list(arrivals([Step(500, 20.0)], "poisson", seed=3))
    assert len(due) == pytest.approx(10_000, rel=0.03)
    assert due == sorted(due)
    assert max(due) < 20.0
    assert list(arrivals([Step(500, 1.0)], "poisson", seed=3)) == list(arrivals([Step(500, 1.0)], "poisson", seed=3))


def test_a_pause_step_has_no_arrivals():
    due = list(arrivals([Step(10, 1.0), Step(0, 1.0), Step(10, 1.0)]))
    assert not [t for t in due if 1.0 <= t < 2.0]
    assert len(due) == 20


# --- mix ------------------------------------------------------------------------------------------------


def test_mix_draws_by_weight():
    mix = Mix.parse("feed=3,list=1,login=0")
    rng = random.Random(1)
    drawn = [mix.choose(rng) for _ in range(20_000)]
    assert drawn.count("feed") / len(drawn) == pytest.approx(0.75, abs=0.02)
    assert "login" not in drawn
    assert mix.names == ["feed", "list"]


def test_the_default_mix_is_mostly_feed_and_metadata():
    mix = Mix(DEFAULT_MIX)
    assert set(mix.names) == set(SCENARIOS)
    assert mix.share("feed") + mix.share("list") + mix.share("compare") > 0.6
    assert mix.share("upload_small") + mix.share("upload_batch") + mix.share("upload_multipart") > 0.05


@pytest.mark.parametrize("text", ["nosuch=1", "feed=x", "feed=-1", "feed=0", ""])
def test_a_bad_mix_is_refused(text: str):
    with pytest.raises(ValueError, match=r"unknown|number|negative|positive"):
        Mix.parse(text)


# --- engines --------------------------------------------------------------------------------------------


def fixed(name: str, op):
    return lambda: (name, op)


async def test_open_loop_starts_requests_on_time():
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def op() -> None:
        starts.append(loop.time())

    recorder = Recorder()
    due = list(arrivals([Step(200, 1.0)]))
    t0 = loop.time()
    await open_loop(fixed("feed", op), iter(due), Limits(duration=1.0, max_requests=10_000), recorder)
    assert len(starts) == recorder.ok == 200
    lags = sorted(s - t0 - d for s, d in zip(starts, due, strict=True))
    assert lags[0] >= -0.002  # never early
    assert lags[len(lags) // 2] < 0.01  # on time (a shared 2-core machine gets a little slack)
    assert starts[-1] - starts[0] == pytest.approx(due[-1], abs=0.05)  # the rate held over the whole second
    assert recorder.histograms["feed"].count == 200


async def test_open_loop_latency_counts_from_the_due_time():
    """A stall that delays sending shows in the latencies of the requests that waited (no coordinated
    omission): measured from the send, all but one would be about zero."""
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.3)  # the whole client stalls, as in a GC pause or a blocked loop

    recorder = Recorder()
    await open_loop(fixed("feed", op), arrivals([Step(100, 1.0)]), Limits(1.0, 10_000), recorder)
    histogram = recorder.histograms["feed"]
    assert histogram.count == 100
    assert histogram.max >= 0.29
    assert histogram.percentile(90) >= 0.1  # the ~30 requests due during the stall


async def test_open_loop_stops_at_its_time_bound():
    forever = asyncio.Event()

    async def hang() -> None:
        await forever.wait()

    recorder = Recorder()
    started = time.monotonic()
    wall = await open_loop(
        fixed("compare", hang),
        arrivals([Step(20, 60.0)]),
        Limits(duration=0.5, max_requests=10_000, drain=0.3),
        recorder,
    )
    elapsed = time.monotonic() - started
    assert 0.75 <= elapsed < 1.5
    assert wall == pytest.approx(elapsed, abs=0.1)
    assert recorder.offered == 10  # 20/s for 0.5 s, though the schedule went on for a minute
    assert recorder.ok == 0
    assert recorder.errors["compare"] == {CUT_OFF: 10}


async def test_open_loop_stops_at_its_count_bound_and_drops_past_max_in_flight():
    forever = asyncio.Event()

    async def hang() -> None:
        await forever.wait()

    recorder = Recorder()
    limits = Limits(duration=5.0, max_requests=6, max_in_flight=2, drain=0.1)
    started = time.monotonic()
    await open_loop(fixed("feed", hang), arrivals([Step(1000, 5.0)]), limits, recorder)
    assert time.monotonic() - started < 1.0  # the count ran out at once: drain from then, not from 5 s
    assert recorder.offered == 6
    assert recorder.errors["feed"] == {DROPPED: 4, CUT_OFF: 2}
    assert recorder.dropped == 4


async def test_a_request_over_its_timeout_is_a_timeout_error():
    async def slow() -> None:
        await asyncio.sleep(1)

    recorder = Recorder()
    await open_loop(fixed("login", slow), arrivals([Step(10, 0.2)]), Limits(0.2, 100, timeout=0.05), recorder)
    assert recorder.errors["login"] == {"timeout": 2}


async def test_closed_loop_runs_n_users_until_its_bounds():
    running = 0
    most = 0

    async def op() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    recorder = Recorder()
    started = time.monotonic()
    await closed_loop(fixed("list", op), 4, Limits(duration=0.3, max_requests=10_000), recorder)
    assert time.monotonic() - started < 1.0
    assert most == 4
    assert 40 <= recorder.ok <= 4 * 30
    counted = Recorder()
    await closed_loop(fixed("list", op), 4, Limits(duration=10, max_requests=9), counted)
    assert counted.ok == 9


def test_errors_are_classified_by_status_and_type():
    assert classify(ApiError(503, "Service Unavailable", "x")) == "HTTP 503 Service Unavailable"
    assert classify(ApiError(0, "Unreachable", "x")) == "unreachable"
    assert classify(TimeoutError()) == "timeout"
    assert classify(KeyError("k")) == "KeyError"


# --- report and target ----------------------------------------------------------------------------------


def test_report_and_status_line():
    recorder = Recorder()
    for i in range(100):
        recorder.due(i / 50)
        recorder.start()
        recorder.success("feed" if i % 2 else "download", i / 50, i / 50 + 0.01 * (i % 5 + 1))
    recorder.failure("download", "HTTP 503 Service Unavailable", 1.5)
    recorder.sample(0.5, 3, (100 * 2**20, 60 * 2**20))
    built = report.build(recorder, wall=2.0, config={"mode": "open"}, started_at=datetime.now(UTC))
    json.dumps(built)  # a JSON document
    assert built["requests"] == {"due": 100, "started": 100, "ok": 100, "errors": 1, "dropped": 0}
    assert built["throughput_per_second"] == 50.0
    assert built["scenarios"]["download"]["errors_by_type"] == {"HTTP 503 Service Unavailable": 1}
    assert built["latency_ms"]["p50"] == pytest.approx(30, rel=1e-3)
    assert [row["t"] for row in built["timeline"]] == [0, 1, 2]
    assert built["timeline"][0]["rss_mib"] == 100.0
    assert built["timeline"][0]["anon_mib"] == 60.0
    lines = report.summary_lines(built)
    assert lines[2].startswith("all")
    assert "HTTP 503" in lines[-1]
    stream = io.StringIO()
    StatusLine(10, stream)(2.0, recorder, 3)
    assert "ok 100" in stream.getvalue()


def test_only_loopback_targets_unless_allowed():
    for url in ("http://127.0.0.1:8080", "http://127.8.9.1", "http://[::1]:80/x", "http://localhost:1"):
        assert is_loopback(url), url
    for url in ("http://192.0.2.1:8080", "http://10.0.0.1", "https://[2001:db8::1]/", "not a url"):
        assert not is_loopback(url), url
    check_target("http://127.0.0.1:1", False, "the server")
    check_target("http://192.0.2.1", True, "the server")
    with pytest.raises(RemoteTarget, match="--allow-remote"):
        check_target("http://192.0.2.1", False, "the server")
    with pytest.raises(RemoteTarget, match="AWS"):
        check_target(None, False, "the S3 endpoint")


def test_memory_growth_and_objectives():
    timeline = [
        {"t": t, "rss_mib": 100.0 if t < 130 else 103.0, "anon_mib": 50.0 if t < 130 else 55.0} for t in range(600)
    ]
    growth = rss_growth(timeline, 120)
    assert growth == {
        "from_second": 120,
        "start_mib": 100.0,
        "end_mib": 103.0,
        "peak_mib": 103.0,
        "growth_percent": 3.0,
        "anon_start_mib": 50.0,
        "anon_end_mib": 55.0,
        "anon_peak_mib": 55.0,
        "anon_growth_percent": 10.0,
    }
    assert rss_growth([{"t": 0, "rss_mib": None, "anon_mib": None}], 120) is None
    report_ = {"latency_ms": {"p99": 300.0}, "requests": {"errors": 1, "dropped": 1}, "service_rss": growth}
    args = parser().parse_args(["--slo-p99-ms", "250", "--slo-errors", "0", "--slo-rss-growth", "5"])
    assert check(report_, args) == [
        "p99 300.0 ms >= 250 ms",
        "2 errors + dropped > 0",
        "service anonymous memory grew 10.0% >= 5%",
    ]
    assert check(report_, parser().parse_args([])) == []
