"""The MWAA build for real: it resolves under each supported release's pins for MWAA's Python 3.12,
and its plugins.zip installs with ``--no-index`` into a fresh virtualenv that holds the image's
packages. Slow (PyPI, fresh environments): ``-m "not slow"`` leaves them out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import pytest

from airflow_sm_provider import mwaa

# Measured here (slow network, loaded machine): 5-7 min per build, 30 min for the install test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


# 3.3.1 only, to keep CI short (a build takes minutes): 3.2.1 is built by the next test, for this
# machine's Python; `airflow-sm mwaa build --airflow-version 3.2.1` builds it for MWAA's.
@pytest.mark.parametrize("version", ["3.3.1"])
def test_build_resolves_for_mwaa_python_under_the_release_pins(version: str, tmp_path: Path) -> None:
    result = mwaa.build(version, tmp_path)
    names = zipfile.ZipFile(result.plugins_zip).namelist()
    ours = [n for n in names if n.startswith("airflow_sm_provider-")]
    assert len(ours) == 1
    assert any(n.startswith("matplotlib-") and "cp312" in n and "manylinux" in n for n in names)
    # Nothing the image holds is shipped again (it would be a second copy pip never uses).
    image = mwaa.parse_pins(mwaa.load_release(version).image_file.read_text())
    shipped = {n.split("-")[0].lower().replace("_", "-") for n in names if n.endswith(".whl")}
    assert shipped.isdisjoint(image)
    assert result.requirements_txt.read_text().endswith(f"airflow-sm-provider=={ours[0].split('-')[1]}\n")
    assert (tmp_path / "dags" / "sagemaker_training_pipeline.py").is_file()
    print(
        f"MWAA {version}: plugins.zip {result.plugins_zip.stat().st_size / 1e6:.1f} MB, {len(names)} files, "
        f"built in {result.seconds:.0f} s"
    )


def test_plugins_zip_installs_without_an_index_on_top_of_the_image(tmp_path: Path) -> None:
    """MWAA 3.2.1 (its numpy pin also supports this machine's Python 3.11; 3.3.1 pins numpy 2.5, 3.12+).

    The virtualenv gets exactly the image's package versions (``--no-deps``: they are a resolved set),
    then MWAA's own step: ``pip install -r requirements.txt`` with the zip unpacked as the plugins
    folder. Two substitutions make that run here: the plugins path, and the constraints URL (GitHub
    is out of reach) by MWAA's copy of the same file.
    """
    started = time.monotonic()
    release = mwaa.load_release("3.2.1")
    out = tmp_path / "out"
    result = mwaa.build(release.airflow, out, python=None)
    plugins = tmp_path / "plugins"
    zipfile.ZipFile(result.plugins_zip).extractall(plugins)
    requirements = (
        result.requirements_txt.read_text()
        .replace(mwaa.PLUGINS_PATH, str(plugins))
        .replace(release.constraints_url, str(release.constraints_file))
    )
    (tmp_path / "requirements.txt").write_text(requirements)

    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    image = [line for line in release.image_file.read_text().splitlines() if not line.startswith("#")]
    # psycopg2 and pycurl of the image are compiled there; they are leaves nothing here imports.
    image = [line for line in image if line.split("==")[0] not in {"psycopg2", "pycurl"}]
    (tmp_path / "image.txt").write_text("\n".join(image) + "\n")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    subprocess.run([*pip, "--no-deps", "-r", str(tmp_path / "image.txt")], check=True)
    done = subprocess.run(
        [*pip, "-r", str(tmp_path / "requirements.txt")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    check = subprocess.run(
        [python, "-c", "import airflow_sm_provider.operators.jobs, matplotlib, pandas; print('ok')"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ["PATH"], "AIRFLOW_HOME": str(tmp_path / "airflow")},
    )
    assert check.stdout.strip() == "ok", check.stderr[-3000:]
    print(
        f"no-index install on top of the MWAA 3.2.1 image: {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
