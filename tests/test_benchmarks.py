"""The benchmark harness: every benchmark registers and runs, and BENCHMARKS.md renders from results.

The default selection imports every benchmark and runs the cheapest one for real (simulated
clocks, no engine); ``-m slow`` runs ``python -m benchmarks --quick`` over all of them (minutes:
each starts engines, jobs and fresh interpreters).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS_OF_THE_ISSUE = {
    "waiting_cost",
    "wake_latency",
    "metric_fidelity",
    "dag_parse",
    "report_scale",
    "metric_parsing",
    "engine_latency",
    "main_job",
}


def test_every_benchmark_of_the_table_is_registered() -> None:
    from benchmarks.harness import discover

    registry = discover()
    assert set(registry) >= ROWS_OF_THE_ISSUE
    assert all(callable(bench.func) and bench.description for bench in registry.values())


def test_the_cheapest_benchmark_runs_and_renders(tmp_path: Path) -> None:
    from benchmarks.harness import Settings, discover, run
    from benchmarks.render import render, write

    payload = run(discover()["wake_latency"], Settings(runs=1, quick=True), tmp_path)
    assert payload["machine"]["cores"] >= 1 and payload["machine"]["packages"]["botocore"]
    rows = payload["results"]["rows"]
    assert [r["row"].split("job of ")[1].split(" (")[0] for r in rows] == ["1 min", "45 min", "6 h"]
    assert "gives up after 60 attempts" in rows[1]["alternative"]  # read from the Amazon operator
    page = write(tmp_path, tmp_path / "BENCHMARKS.md").read_text()
    assert page == render([json.loads((tmp_path / "wake_latency.json").read_text())])
    assert "| 1 | Job end -> wait sees it, job of 1 min" in page


def test_the_table_says_which_targets_are_missed_and_why() -> None:
    from benchmarks.harness import row
    from benchmarks.render import render

    machine = {"cores": 2, "cpu": "x86_64", "system": "Linux", "python": "3.11", "packages": {"boto3": "1"}}
    measured = {
        "benchmark": "report_scale",
        "machine": {**machine, "load_average_1m": 9.5},
        "results": {"rows": [row("Report | scale", "17 s", "none", target="<= 10 s", met=False, note="csv")]},
    }
    unported = {"benchmark": "event_wait", "description": "events", "results": {"within_target": True}}
    page = render([measured, unported])
    assert "| 1 | Report \\| scale | 17 s | none | - | <= 10 s | **no** |" in page
    assert "1. **Target missed** (Report | scale): csv" in page
    assert "| 2 | events | see `benchmarks/results/event_wait.json` | - | - | its own | yes |" in page
    assert "load average 9.5-9.5 on 2 cores" in page


def test_summary_has_median_and_spread_and_judges_the_target() -> None:
    from benchmarks.harness import misses, summarize

    result = summarize([0.010, 0.030, 0.020, 0.040], target_ms=25)
    assert result["median_ms"] == 25.0 and result["min_ms"] == 10.0 and result["max_ms"] == 40.0
    assert result["p25_ms"] <= result["median_ms"] <= result["p75_ms"] and result["within_target"]
    assert list(misses({"a": summarize([0.1], target_ms=1), "b": result})) == ["a"]
    assert list(misses({"rows": [{"within_target": True}, {"within_target": False}]})) == ["rows[1]"]


def test_a_name_is_registered_once() -> None:
    from benchmarks.harness import REGISTRY, Settings, benchmark

    @benchmark("twice-registered", "a test benchmark")
    def once(settings: Settings) -> dict:
        return {}

    try:
        with pytest.raises(ValueError, match="registered twice"):
            benchmark("twice-registered", "again")(once)
    finally:
        REGISTRY.pop("twice-registered")


@pytest.mark.slow
@pytest.mark.integration
def test_quick_run_of_every_benchmark_writes_results(tmp_path: Path) -> None:
    from benchmarks.harness import discover

    names = set(discover())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in names:
        payload = json.loads((tmp_path / f"{name}.json").read_text())
        assert payload["benchmark"] == name and payload["settings"] == {
            "runs": 1,
            "quick": True,
            "full": False,
        }
        assert payload["results"]
