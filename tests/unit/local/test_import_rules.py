"""The engine stands alone: nothing under ``local/`` reaches the provider's Airflow side or its CLI.

Two checks, because each misses what the other sees: the AST scan finds imports inside
functions (which a plain import never runs), the subprocess finds what the imports pull in
transitively (a module that is allowed but itself imports a forbidden one).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import airflow_sm_provider.local

ENGINE_DIR = Path(airflow_sm_provider.local.__file__).parent
#: Pure provider code the engine shares (no AWS, no Airflow): the one home of metric matching.
ALLOWED = ("airflow_sm_provider", "airflow_sm_provider.metrics", "airflow_sm_provider.metrics.matching")
FORBIDDEN = tuple(
    f"airflow_sm_provider.{name}" for name in ("hooks", "operators", "sensors", "triggers", "cli", "demo")
)


def _forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def _imported_modules(path: Path) -> list[str]:
    """Every module an engine file imports, at any depth of its code (relative imports resolved)."""
    package = "airflow_sm_provider.local"
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def test_no_engine_module_imports_hooks_operators_sensors_triggers_or_the_cli():
    offenders = {
        path.name: bad
        for path in sorted(ENGINE_DIR.glob("*.py"))
        if (bad := [m for m in _imported_modules(path) if _forbidden(m)])
    }
    assert offenders == {}


def test_importing_every_engine_module_loads_no_provider_module_outside_the_engine():
    engine_modules = sorted(f"airflow_sm_provider.local.{p.stem}" for p in ENGINE_DIR.glob("*.py"))
    script = (
        "import importlib, json, sys\n"
        f"for name in {engine_modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(out.stdout)
    assert "airflow_sm_provider.local.__main__" in loaded  # the scan covered the entry point
    provider = [
        m
        for m in loaded
        if m.startswith("airflow_sm_provider") and not m.startswith("airflow_sm_provider.local")
    ]
    assert set(provider) <= set(ALLOWED)
    assert "airflow" not in loaded  # the engine runs without Airflow installed in its path
