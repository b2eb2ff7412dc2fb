"""The installed distribution registers itself as an Airflow provider, as Airflow reads it."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest

import airflow_sm_provider


def test_provider_info_names_the_distribution_and_its_version() -> None:
    info = airflow_sm_provider.get_provider_info()
    assert info["package-name"] == distribution("airflow-sm-provider").metadata["Name"]
    assert (
        info["versions"][0] == distribution("airflow-sm-provider").version == airflow_sm_provider.__version__
    )


def test_entry_point_is_registered() -> None:
    (entry,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_sm_provider")
    ]
    assert entry.load() is airflow_sm_provider.get_provider_info


def test_every_declared_module_and_link_imports() -> None:
    info = airflow_sm_provider.get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for block in info[section]:
            for module in block["python-modules"]:
                importlib.import_module(module)
    for path in info["extra-links"]:
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path
    assert "connection-types" not in info  # the Amazon provider owns the aws connection type


@pytest.mark.integration
def test_airflow_providers_list_shows_the_provider() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        env=os.environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # Airflow may log warnings to stdout before the JSON document.
    document = next(line for line in listed.stdout.splitlines() if line.startswith("["))
    providers = {row["package_name"]: row for row in json.loads(document)}
    assert providers["airflow-sm-provider"]["version"] == airflow_sm_provider.__version__


def test_every_setting_the_code_reads_is_declared_with_the_code_s_default():
    """Airflow shows declared options in its config listing; the defaults must be the code's."""
    from airflow_sm_provider.triggers import jobs

    options = airflow_sm_provider.get_provider_info()["config"][jobs.CONFIG_SECTION]["options"]
    assert float(options["min_first_poll_seconds"]["default"]) == jobs.MIN_FIRST_POLL_SECONDS
    assert float(options["event_safety_poll_seconds"]["default"]) == jobs.SAFETY_POLL_SECONDS
    assert options["event_queue_url"]["default"] == ""
    source = Path(jobs.__file__).read_text()
    read = set(re.findall(r'conf\.get\w*\(CONFIG_SECTION, "(\w+)"', source))
    assert read == set(options), read
