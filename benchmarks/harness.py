"""The benchmark registry and the JSON every benchmark writes.

A benchmark is a function of a :class:`Settings` returning a JSON-safe dict, registered with
the :func:`benchmark` decorator in any module of this package (modules are found on their own,
so adding one is a new file with one decorated function)::

    @benchmark("metric_parsing", "Parse 1M log lines with the job's MetricDefinitions")
    def metric_parsing(settings: Settings) -> dict:
        samples = [timed(parse_lines) for _ in range(settings.runs)]
        return {"parse_1m_lines": summarize(samples, target_ms=2000)}

:func:`run` writes ``<out>/<name>.json``: the benchmark's results, the machine (cores, CPU,
Python, package versions), the settings and the wall time. A dict in the results holding
``within_target: False`` (as :func:`summarize` sets against a ``target_ms``) counts as a miss.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"
#: Distributions whose versions explain a result.
PACKAGES = (
    "airflow-sm-provider",
    "apache-airflow",
    "apache-airflow-providers-amazon",
    "boto3",
    "botocore",
    "aiobotocore",
    "moto",
)


@dataclass(frozen=True)
class Settings:
    """How much to measure: ``runs`` repetitions; ``quick`` asks for the smallest sizes (CI)."""

    runs: int = 10
    quick: bool = False


@dataclass(frozen=True)
class Benchmark:
    """One registered benchmark."""

    name: str
    description: str
    func: Callable[[Settings], dict[str, Any]]


REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str, description: str) -> Callable[[Callable[[Settings], dict[str, Any]]], Any]:
    """Register the decorated function as benchmark ``name`` (names are unique)."""

    def register(func: Callable[[Settings], dict[str, Any]]) -> Callable[[Settings], dict[str, Any]]:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        REGISTRY[name] = Benchmark(name, description, func)
        return func

    return register


def discover() -> dict[str, Benchmark]:
    """Import every module of this package (registering its benchmarks); the registry by name."""
    package = Path(__file__).parent
    for module in pkgutil.iter_modules([str(package)]):
        if not module.name.startswith("_") and module.name != "harness":
            importlib.import_module(f"{__package__}.{module.name}")
    return dict(sorted(REGISTRY.items()))


def summarize(samples: list[float], *, target_ms: float | None = None) -> dict[str, Any]:
    """Median and spread (min, max, quartiles) of durations in seconds, in milliseconds."""
    ms = sorted(sample * 1000 for sample in samples)
    quartiles = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0], ms[0], ms[0]]
    result: dict[str, Any] = {
        "median_ms": round(statistics.median(ms), 1),
        "min_ms": round(ms[0], 1),
        "max_ms": round(ms[-1], 1),
        "p25_ms": round(quartiles[0], 1),
        "p75_ms": round(quartiles[2], 1),
        "runs": len(ms),
    }
    if target_ms is not None:
        result["target_ms"] = target_ms
        result["within_target"] = result["median_ms"] <= target_ms
    return result


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": packages,
    }


def misses(results: Any, path: str = "") -> Iterator[str]:
    """The paths of every result that says ``within_target: False``."""
    if isinstance(results, dict):
        if results.get("within_target") is False:
            yield path or "(top level)"
        for key, value in results.items():
            yield from misses(value, f"{path}.{key}" if path else str(key))


def run(bench: Benchmark, settings: Settings, out: Path) -> dict[str, Any]:
    """Run one benchmark and write ``out/<name>.json``; returns what was written."""
    started = time.perf_counter()
    results = bench.func(settings)
    payload = {
        "benchmark": bench.name,
        "description": bench.description,
        "settings": asdict(settings),
        "machine": machine(),
        "wall_s": round(time.perf_counter() - started, 2),
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{bench.name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return payload
