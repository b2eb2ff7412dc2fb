"""The template DAG end to end while the engine fails 30% of the SageMaker calls (slow).

``airflow-sm demo``'s run of ``sagemaker_training_pipeline`` (``dag.test()``, the deferred
waits included) on an engine with ``SAGEMAKER_LOCAL_FAULTS`` on: throttling, 5xx and dropped
connections on 30% of SageMaker calls, and every Create's answer lost. Every client runs with
the provider's retry budget (10 attempts: ``hooks.jobs.DEFAULT_RETRIES``; ``AWS_MAX_ATTEMPTS``
for the SDK's and the harness's own clients). The run must succeed with exactly one
processing and three training jobs, all Completed: none duplicated, orphaned or lost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jobs_support import InjectedFaults

from airflow_sm_provider.local.faults import ENV_VAR

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(1800)  # retries back off: far longer than the fault-free run under load
def test_template_dag_under_faults_runs_each_job_once(tmp_path: Path, monkeypatch) -> None:
    from airflow_sm_provider.demo import run_demo

    monkeypatch.setenv(ENV_VAR, json.dumps({"rate": 0.3, "after_create": 1.0, "seed": 30}))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "10")
    artifacts = tmp_path / "artifacts"
    with InjectedFaults() as faults:
        code = run_demo(artifacts, DAGS_FOLDER, {"epochs": 6})
    summary = json.loads((artifacts / "run-summary.json").read_text())
    assert code == 0 and summary["state"] == "success", (artifacts / "dag-test.log").read_text()[-3000:]
    jobs = summary["jobs"]
    assert sorted(job["kind"] for job in jobs) == ["processing", "training", "training", "training"]
    assert {job["status"] for job in jobs} == {"Completed"}
    assert faults.count >= 4  # at least each Create's lost answer
