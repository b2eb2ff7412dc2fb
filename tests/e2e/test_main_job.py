"""The README's main job: the template DAG end to end on the local engine (slow, one test)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.mark.e2e
def test_template_dag_runs_end_to_end_and_writes_artifacts(tmp_path: Path) -> None:
    from airflow_sm_provider.demo import run_demo

    artifacts = tmp_path / "artifacts"
    assert run_demo(artifacts, DAGS_FOLDER, {"learning_rates": [0.1, 0.5], "epochs": 4}) == 0

    summary = json.loads((artifacts / "run-summary.json").read_text())
    assert summary["state"] == "success", (artifacts / "dag-test.log").read_text()[-3000:]
    assert set(summary["tasks"].values()) == {"success"}
    kinds = sorted(job["kind"] for job in summary["jobs"])
    assert kinds == ["processing", "training", "training"]
    assert {job["status"] for job in summary["jobs"]} == {"Completed"}

    for job in summary["jobs"]:
        log = (artifacts / "logs" / f"{job['name']}.log").read_text()
        if job["kind"] == "training":
            assert "epoch=4 " in log
            with tarfile.open(artifacts / "jobs" / job["name"] / "output" / "model.tar.gz") as model:
                assert "model.pkl" in model.getnames()
        else:
            assert "wrote" in log and "validation rows" in log
