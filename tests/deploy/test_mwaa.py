"""MWAA packaging: the pure rules against the vendored MWAA pins, and the command's error path."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from airflow_sm_provider import mwaa

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "deploy" / "mwaa" / "constraints"


def install_requires() -> list[Requirement]:
    """This project's install_requires, read from setup.cfg (what the wheel's metadata carries)."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return [Requirement(line) for line in parser["options"]["install_requires"].split("\n") if line.strip()]


def test_pins_read_constraints_files_by_canonical_name() -> None:
    text = "# comment\n--constraint other.txt\n\nPyYAML==6.0.3\nfoo_bar[x]==1.2 ; python_version<'3.13'\n"
    assert mwaa.parse_pins(text) == {"pyyaml": "6.0.3", "foo-bar": "1.2"}
    with pytest.raises(mwaa.MwaaBuildError, match="expected 'name==version'"):
        mwaa.parse_pins("boto3>=1.37\n")


def test_wheel_requirements_keep_unconditional_ones_for_the_target_python() -> None:
    metadata = (
        "Metadata-Version: 2.1\nName: x\n"
        "Requires-Dist: pandas>=2.1\n"
        "Requires-Dist: tomli; python_version < '3.11'\n"
        "Requires-Dist: pytest; extra == 'dev'\n"
    )
    assert [str(r) for r in mwaa.wheel_requirements(metadata, "3.12")] == ["pandas>=2.1"]


@pytest.mark.parametrize("version", ["2.11.2", "3.2.1", "3.3.1"])
def test_our_requirements_fit_the_versions_these_releases_pin(version: str) -> None:
    """Checked against the constraints (a superset of the image), so a version that fits is truly pinned."""
    pins = mwaa.parse_pins((CONSTRAINTS / f"airflow-{version}.txt").read_text())
    image_packages = ["apache-airflow-providers-amazon[aiobotocore]"]
    missing, conflicts = mwaa.split_requirements(install_requires(), pins, version, image_packages)
    assert conflicts == []
    # Airflow, the Amazon provider and boto3 come with the image; matplotlib never does.
    assert {"apache-airflow", "apache-airflow-providers-amazon", "boto3"}.isdisjoint(r.name for r in missing)
    assert "matplotlib" in {r.name for r in missing}


@pytest.mark.parametrize(("version", "pinned"), [("2.11.0", "9.8.0"), ("3.0.6", "9.12.0")])
def test_releases_pinning_an_older_amazon_provider_are_refused(version: str, pinned: str) -> None:
    pins = mwaa.parse_pins((CONSTRAINTS / f"airflow-{version}.txt").read_text())
    _, conflicts = mwaa.split_requirements(
        install_requires(), pins, version, ["apache-airflow-providers-amazon"]
    )
    assert conflicts == [
        f"MWAA {version} has apache-airflow-providers-amazon=={pinned}; this package needs "
        "apache-airflow-providers-amazon[aiobotocore]>=9.18"
    ]


def test_an_extra_the_image_did_not_install_is_a_conflict() -> None:
    _, conflicts = mwaa.split_requirements(
        [Requirement("celery[redis]>=5")], {"celery": "5.6.3"}, "3.3.1", ["celery[sqs]"]
    )
    assert conflicts == ["MWAA 3.3.1 installs celery without the extras ['redis']"]


def test_sagemaker_core_stays_out_of_install_requires() -> None:
    """Every sagemaker-core without torch needs importlib-metadata<7 and cryptography>=46, which no
    MWAA image has (3.x: importlib_metadata 8.x; 2.11.2: cryptography 44): it is the experiments extra."""
    assert "sagemaker-core" not in {r.name for r in install_requires()}
    for version, name, installed in [("3.3.1", "importlib-metadata", "8.9.0")]:
        image = mwaa.parse_pins(mwaa.load_release(version).image_file.read_text())
        assert image[name] == installed


def test_what_the_image_lacks_and_what_it_must_not_lose() -> None:
    image = {"boto3": "1.43.56", "packaging": "26.0"}
    resolved = {"boto3": "1.43.56", "matplotlib": "3.11.0", "packaging": "26.0"}
    assert mwaa.image_lacks(resolved, image) == {"matplotlib": "3.11.0"}
    with pytest.raises(mwaa.MwaaBuildError, match=r"boto3==1.44.0 \(image has 1.43.56\)"):
        mwaa.image_lacks({"boto3": "1.44.0"}, image)


def test_requirements_txt_installs_only_from_plugins_with_mwaa_constraints() -> None:
    text = mwaa.requirements_txt(mwaa.load_release("3.3.1"), "airflow-sm-provider", "0.1.0")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt"',
        "--no-index",
        "--find-links /usr/local/airflow/plugins",
        "airflow-sm-provider==0.1.0",
    ]


def test_an_unknown_release_names_the_option_and_the_known_ones() -> None:
    with pytest.raises(mwaa.MwaaBuildError, match=r"--airflow-version: '2.10.3' .*\(one of 3.2.1, 3.3.1;"):
        mwaa.load_release("2.10.3")


def test_every_release_has_its_pins_and_its_image_list() -> None:
    for version in ["3.2.1", "3.3.1"]:
        release = mwaa.load_release(version)
        image = mwaa.parse_pins(release.image_file.read_text())
        assert image["apache-airflow"] == version
        constraints = mwaa.parse_pins(release.constraints_file.read_text())
        # The image is installed under the constraints: every version it holds is the pinned one.
        assert {n: v for n, v in image.items() if n in constraints and constraints[n] != v} == {}


def test_zip_is_reproducible(tmp_path: Path) -> None:
    member = tmp_path / "a.whl"
    member.write_bytes(b"wheel")
    first, second = tmp_path / "1.zip", tmp_path / "2.zip"
    mwaa.write_zip(first, {"b/c.py": member, "a.whl": member})
    mwaa.write_zip(second, {"a.whl": member, "b/c.py": member})
    assert first.read_bytes() == second.read_bytes()


def _build(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m airflow_sm_provider.mwaa build ARGS``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "airflow_sm_provider.mwaa", "build", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_command_reports_bad_input_in_one_line() -> None:
    done = _build("--airflow-version", "9.9.9", "--out", "x")
    assert done.returncode == 2
    assert done.stderr.startswith("error: --airflow-version: '9.9.9' is not an MWAA release known here")


def test_policy_values_come_all_or_none() -> None:
    done = _build("--airflow-version", "3.3.1", "--bucket", "b")
    assert done.returncode == 2
    assert "give all of them or none (missing --partition, --region, --account-id" in done.stderr
