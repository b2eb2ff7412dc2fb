"""The shipped job scripts run on the Python of the images they are meant for.

The local engine runs every image with its own Python, so a script using syntax or builtins
newer than the real container's Python would pass here and fail on SageMaker. The default
image of the template (``sagemaker-scikit-learn:1.2-1-cpu-py3``) runs Python 3.9.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "dags" / "sagemaker_scripts"
IMAGE_PYTHON = "3.9"


def vermin(*paths: str) -> subprocess.CompletedProcess[str]:
    """Run the minimum-version checker (installed beside this interpreter) against ``paths``."""
    command = [
        str(Path(sys.executable).with_name("vermin")),
        f"-t={IMAGE_PYTHON}-",
        "--no-tips",
        "--violations",
    ]
    return subprocess.run([*command, *paths], capture_output=True, text=True, check=False)


def test_job_scripts_need_no_python_newer_than_the_default_image() -> None:
    scripts = sorted(str(path) for path in SCRIPTS.glob("*.py"))
    assert scripts, SCRIPTS
    result = vermin(*scripts)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_checker_catches_a_newer_feature(tmp_path: Path) -> None:
    """The check above is not vacuous: ``zip(strict=True)`` (3.10+) is refused."""
    script = tmp_path / "newer.py"
    script.write_text("pairs = list(zip([1], [2], strict=True))\n")
    result = vermin(str(script))
    assert result.returncode != 0
    assert "zip(strict)" in result.stdout
