"""Every registered benchmark runs (``python -m benchmarks --quick``) and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def test_quick_run_of_every_benchmark_writes_results(tmp_path: Path) -> None:
    from benchmarks.harness import discover

    names = set(discover())
    assert {"engine_latency", "import_cost", "poll_calls"} <= names
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in names:
        payload = json.loads((tmp_path / f"{name}.json").read_text())
        assert payload["benchmark"] == name and payload["settings"] == {"runs": 1, "quick": True}
        assert payload["machine"]["cores"] >= 1 and payload["machine"]["packages"]["botocore"]
        assert payload["results"]


def test_summary_has_median_and_spread_and_judges_the_target() -> None:
    from benchmarks.harness import misses, summarize

    result = summarize([0.010, 0.030, 0.020, 0.040], target_ms=25)
    assert result["median_ms"] == 25.0 and result["min_ms"] == 10.0 and result["max_ms"] == 40.0
    assert result["p25_ms"] <= result["median_ms"] <= result["p75_ms"] and result["within_target"]
    assert list(misses({"a": summarize([0.1], target_ms=1), "b": result})) == ["a"]


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
