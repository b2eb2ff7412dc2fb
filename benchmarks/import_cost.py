"""DAG-parse cost of our operator and sensor modules, over a bare ``import airflow``.

Each run is a fresh interpreter that imports ``airflow``, then every operator and sensor module
the provider declares in ``get_provider_info()``, timing the second step. Reports the median of
10 runs (target <= 50 ms), the heavy modules that got loaded (should be none), and for the
record the cost of the alternative link base, the Amazon provider's ``BaseAwsLink``.

    python benchmarks/import_cost.py [--runs 10]

Writes benchmarks/results/import_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_MS = 50.0
HEAVY = (
    "boto3",
    "botocore",
    "aiobotocore",
    "pandas",
    "airflow.providers.amazon.aws.hooks.base_aws",
    "airflow.providers.amazon.aws.utils.mixins",
)
RESULT = Path(__file__).parent / "results" / "import_cost.json"

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import airflow
t1 = time.perf_counter()
import importlib
for name in {modules!r}:
    importlib.import_module(name)
t2 = time.perf_counter()
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"airflow_ms": (t1 - t0) * 1000, "modules_ms": (t2 - t1) * 1000, "heavy": heavy}}))
"""


def declared_modules() -> list[str]:
    """The operator and sensor modules the provider declares to Airflow."""
    from airflow_sm_provider import get_provider_info

    info = get_provider_info()
    return [
        module
        for kind in ("operators", "sensors")
        for entry in info[kind]
        for module in entry["python-modules"]
    ]


def probe(modules: list[str], env: dict[str, str]) -> dict:
    code = _PROBE.format(modules=modules, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(modules: list[str], runs: int, env: dict[str, str]) -> dict:
    samples = [probe(modules, env) for _ in range(runs)]
    return {
        "modules": modules,
        "median_ms": round(statistics.median(s["modules_ms"] for s in samples), 1),
        "samples_ms": [round(s["modules_ms"], 1) for s in samples],
        "import_airflow_median_ms": round(statistics.median(s["airflow_ms"] for s in samples), 1),
        "heavy_modules_loaded": sorted({m for s in samples for m in s["heavy"]}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        ours = measure(declared_modules(), args.runs, env)
        compat = measure(["airflow_sm_provider._compat"], args.runs, env)
        aws_link = measure(
            ["airflow_sm_provider._compat", "airflow.providers.amazon.aws.links.base_aws"], args.runs, env
        )
    result = {
        "what": "import of all declared operator and sensor modules, over a bare `import airflow`",
        "runs": args.runs,
        "target_ms": TARGET_MS,
        "median_ms": ours["median_ms"],
        "within_target": ours["median_ms"] <= TARGET_MS,
        "operators_and_sensors": ours,
        "link_base_alternatives": {
            "compat_bases_only_ms": compat["median_ms"],
            "compat_plus_amazon_BaseAwsLink_ms": aws_link["median_ms"],
        },
        "python": platform.python_version(),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["within_target"] and not ours["heavy_modules_loaded"] else 1


if __name__ == "__main__":
    sys.exit(main())
