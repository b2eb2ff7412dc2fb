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

Side by side: a benchmark that compares us with what users would pick instead puts
``"rows": [row(...), ...]`` in its results, each our figure, the alternative's, the ratio, the
target and whether it is met; ``python -m benchmarks --render`` (``benchmarks.render``) turns
the rows of every JSON result into the one table of ``BENCHMARKS.md``.
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
from datetime import UTC, datetime
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
    """How much to measure: ``runs`` repetitions; ``quick`` asks for the smallest sizes (CI);
    ``full`` adds the long cases (the default run stays within 10 minutes)."""

    runs: int = 10
    quick: bool = False
    full: bool = False


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


def cpu_timed(func: Callable[[], Any]) -> tuple[Any, float, float]:
    """``func()``'s result, its wall seconds and this process's CPU seconds.

    The machine may be shared: other processes' load stretches wall time far more than CPU time.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = func()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def row(
    name: str,
    ours: str,
    alternative: str,
    *,
    ratio: str = "",
    target: str = "",
    met: bool | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One line of the side-by-side table: our figure, the alternative's, and the verdict.

    ``met`` is None where there is no target; False counts as a miss (``within_target``), and
    ``note`` should then say why.
    """
    line: dict[str, Any] = {
        "row": name,
        "ours": ours,
        "alternative": alternative,
        "ratio": ratio,
        "target": target,
        "met": met,
        "note": note,
    }
    if met is not None:
        line["within_target"] = met
    return line


def in_seconds(summary: dict[str, Any]) -> str:
    """A :func:`summarize` result as the table shows it: "1.23 s (p25-p75 1.10-1.40)"."""
    return (
        f"{summary['median_ms'] / 1000:.2f} s "
        f"(p25-p75 {summary['p25_ms'] / 1000:.2f}-{summary['p75_ms'] / 1000:.2f})"
    )


def times(factor: float, word: str) -> str:
    """A ratio as the table shows it: ``times(250, "fewer calls")`` -> "250x fewer calls"."""
    return f"{factor:,.1f}x {word}" if factor < 100 else f"{factor:,.0f}x {word}"


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
        # Others' load on a shared machine stretches wall times: recorded beside every result.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def misses(results: Any, path: str = "") -> Iterator[str]:
    """The paths of every result that says ``within_target: False``."""
    if isinstance(results, dict):
        if results.get("within_target") is False:
            yield path or "(top level)"
        for key, value in results.items():
            yield from misses(value, f"{path}.{key}" if path else str(key))
    elif isinstance(results, list):  # the table's rows
        for index, value in enumerate(results):
            yield from misses(value, f"{path}[{index}]")


def run(bench: Benchmark, settings: Settings, out: Path) -> dict[str, Any]:
    """Run one benchmark and write ``out/<name>.json``; returns what was written."""
    started = time.perf_counter()
    results = bench.func(settings)
    payload = {
        "benchmark": bench.name,
        "description": bench.description,
        "settings": asdict(settings),
        "machine": machine(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - started, 2),
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{bench.name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return payload
