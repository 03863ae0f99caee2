"""``python -m tools.loadtest`` end to end: a short open-loop run of every scenario against the real service
(this package's service process), then the report it wrote."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.test_entrypoints import ROOT
from tools.bench.harness import clean_env
from tools.loadtest.__main__ import main
from tools.loadtest.mix import SCENARIOS

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_short_run_writes_its_report_and_plots(server, tmp_path):
    out = tmp_path / "report"
    mix = ",".join(SCENARIOS)  # every scenario, equal weights
    args = ["--server", server, "--rate", "8", "--duration", "3", "--users", "2", "--seed-files", "30"]
    args += ["--mix", mix, "--seed", "1", "--out", str(out), "--slo-errors", "0"]
    result = subprocess.run(
        [sys.executable, "-m", "tools.loadtest", *args],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["requests"]["due"] == 24
    assert report["requests"]["ok"] == 24, report["errors_by_type"]
    assert report["errors_by_type"] == {}
    assert sum(s["ok"] for s in report["scenarios"].values()) == 24
    assert set(report["scenarios"]) <= set(SCENARIOS)
    assert len(report["scenarios"]) >= 5  # seeded draws: most scenarios ran
    assert report["latency_ms"]["count"] == 24
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert report["config"]["workload"]["seed_files"] == 30
    assert sum(row["offered"] for row in report["timeline"]) == 24
    for name in ("latency.png", "throughput.png", "percentiles.png"):
        assert (out / name).read_bytes().startswith(PNG)
    assert "throughput" in result.stdout
    assert re.search(r"\[\s+\d+/3 s\] due 24  ok 24  errors 0", result.stderr)  # the live line, final counts


def test_a_remote_target_is_refused(tmp_path, capsys):
    code = main(["--server", "http://192.0.2.1:8080", "--duration", "1", "--out", str(tmp_path), "--quiet"])
    assert code == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists()
