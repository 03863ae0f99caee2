"""The run's report: one JSON document, and PNG plots drawn from it (latency over time, throughput over
time, the percentile curve per scenario).

Layer: tools (leaf). The plots are drawn from the JSON document alone, so a saved report can be re-plotted
(``python -m tools.loadtest plot REPORT.json``); matplotlib (Agg backend, no display) is imported only
when plotting.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.loadtest.mix import SCENARIOS
from tools.loadtest.recorder import Recorder

PLOTS = ("latency.png", "throughput.png", "percentiles.png")


def build(recorder: Recorder, *, wall: float, config: dict[str, Any], started_at: datetime) -> dict[str, Any]:
    overall = recorder.overall()
    window = max(wall, 1e-9)
    scenarios = {
        name: {
            "ok": recorder.histograms[name].count if name in recorder.histograms else 0,
            "errors": sum(recorder.errors.get(name, {}).values()),
            "errors_by_type": recorder.errors.get(name, {}),
            "latency_ms": recorder.histograms[name].summary_ms() if name in recorder.histograms else None,
        }
        for name in SCENARIOS
        if name in recorder.histograms or name in recorder.errors
    }
    return {
        "tool": "python -m tools.loadtest",
        "started_at": started_at.astimezone(UTC).isoformat(timespec="seconds"),
        "config": config,
        "wall_seconds": round(wall, 3),
        "requests": {
            "due": recorder.offered,
            "started": recorder.started,
            "ok": recorder.ok,
            "errors": recorder.failed,
            "dropped": recorder.dropped,
        },
        "throughput_per_second": round(recorder.ok / window, 2),
        "offered_per_second": round(recorder.offered / window, 2),
        "latency_ms": overall.summary_ms(),
        "errors_by_type": recorder.errors_by_type(),
        "scenarios": scenarios,
        "timeline": recorder.timeline(),
    }


def write(report: dict[str, Any], out: Path, plots: bool = True) -> list[Path]:
    """``report.json`` and (with ``plots``) the PNGs in ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    return [path, *(draw(report, out) if plots else [])]


def draw(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = report["timeline"]
    t = [row["t"] for row in timeline]
    title = _title(report)
    written = []

    figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        axes.plot(t, [row[key] for row in timeline], label=label, linewidth=1.2)
    axes.set_yscale("log")
    axes.set_xlabel("seconds since start (by completion)")
    axes.set_ylabel("latency from due time, ms")
    axes.set_title(f"Latency over time: {title}", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    written.append(_save(figure, out / "latency.png"))

    figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
    axes.plot(t, [row["offered"] for row in timeline], label="due (offered)", linestyle="--", linewidth=1)
    axes.plot(t, [row["ok"] for row in timeline], label="ok", linewidth=1.2)
    axes.plot(t, [row["errors"] + row["dropped"] for row in timeline], label="errors + dropped", linewidth=1.2)
    axes.set_xlabel("seconds since start")
    axes.set_ylabel("requests per second")
    axes.set_title(f"Throughput over time: {title}", fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend()
    written.append(_save(figure, out / "throughput.png"))

    figure, axes = plt.subplots(figsize=(9.5, 4.5), dpi=100)
    curves = [("all", report["latency_ms"])] + [
        (name, s["latency_ms"]) for name, s in report["scenarios"].items() if s["latency_ms"]
    ]
    for name, summary in curves:
        points = [(p, ms) for p, ms in summary["curve"] if p < 100.0]
        # x = 1 / (1 - p): each "nine" gets the same width, as HdrHistogram plots do.
        axes.plot(
            [1 / (1 - p / 100) for p, _ in points],
            [ms for _, ms in points],
            label=f"{name} (n={summary['count']:,})",
            linewidth=2.0 if name == "all" else 1.0,
            color="black" if name == "all" else None,
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    axes.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency, ms")
    axes.set_title(f"Latency by percentile: {title}", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot, off the curves
    written.append(_save(figure, out / "percentiles.png"))
    return written


def _title(report: dict[str, Any]) -> str:
    config = report["config"]
    if config.get("mode") == "closed":
        return f"{config.get('users')} closed-loop users, {report['wall_seconds']:.0f} s"
    return f"open loop {config.get('rate_description', '')}, {report['wall_seconds']:.0f} s"


def _save(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report as text for the terminal: totals, then one line per scenario."""
    r = report["requests"]
    lines = [
        f"{r['due']:,} due, {r['started']:,} started: {r['ok']:,} ok, {r['errors']:,} errors, "
        f"{r['dropped']:,} dropped, in {report['wall_seconds']:.1f} s; "
        f"throughput {report['throughput_per_second']:,.1f}/s",
        f"{'scenario':<17}{'ok':>8}{'errors':>8}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}  (ms)",
    ]
    rows = [("all", report["latency_ms"], r["errors"] + r["dropped"])] + [
        (name, s["latency_ms"], s["errors"]) for name, s in report["scenarios"].items()
    ]
    for name, summary, errors in rows:
        if summary is None or summary["count"] == 0:
            lines.append(f"{name:<17}{0:>8}{errors:>8}")
            continue
        cells = "".join(f"{summary[k]:>9.1f}" for k in ("p50", "p90", "p99", "p99.9", "max"))
        lines.append(f"{name:<17}{summary['count']:>8,}{errors:>8,}{cells}")
    for kind, n in report["errors_by_type"].items():
        lines.append(f"  error {kind}: {n:,}")
    return lines
