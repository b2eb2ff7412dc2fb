"""Helpers shared by the benchmark scripts: medians and JSON results."""

from __future__ import annotations

import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def summarize(samples: list[float]) -> dict[str, float]:
    """Median, min and max of a list of seconds, in milliseconds."""
    return {
        "median_ms": round(statistics.median(samples) * 1000, 1),
        "min_ms": round(min(samples) * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
        "runs": len(samples),
    }


def save(name: str, results: dict[str, Any]) -> Path:
    """Print the results and write them to ``benchmarks/results/<name>.json``."""
    payload = {
        "benchmark": name,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "results": results,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path
