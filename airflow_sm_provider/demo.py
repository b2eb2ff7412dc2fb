"""The main job: the template DAG end to end on the local engine, artifacts to a folder.

It starts an embedded local SageMaker engine, points Airflow (a throwaway AIRFLOW_HOME on
SQLite) and every AWS client at it, runs ``sagemaker_training_pipeline`` with ``dag.test()``
and then copies what the run produced from the engine's S3 into the artifacts folder:

    artifacts/
      run-summary.json      DAG run state, task states, one record per SageMaker job
      jobs/<job>/           model.tar.gz / output.tar.gz / processing outputs
      logs/<job>.log        the job's CloudWatch log, as the engine captured it
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_sm_provider.job_kinds import JobSummary

DAG_ID = "sagemaker_training_pipeline"
DEMO_BUCKET = "airflow-sm-demo"


def _airflow_environment(airflow_home: Path, dags_folder: Path, engine_env: dict[str, str]) -> dict[str, str]:
    """Environment for a private Airflow on SQLite whose AWS calls reach the local engine."""
    return {
        **engine_env,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        # Jobs on the engine take seconds: poll often instead of the template's minute.
        "SAGEMAKER_PIPELINE_POLL_SECONDS": "2",
        # The aws_default connection of the DAG: no keys (the environment has the engine's
        # own, which it verifies) and the engine as endpoint.
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": engine_env["AWS_ENDPOINT_URL"]}}
        ),
    }


def _download_prefix(s3: Any, uri: str, target: Path) -> None:
    """Copy every object under an S3 URI (a "folder") into ``target``, refusing keys that escape it."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/"  # "output/" must not match "output-2/..."
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/"):  # a "folder" marker, no content
                continue
            path = (target / obj["Key"][len(prefix) :]).resolve()
            if not path.is_relative_to(target.resolve()) or path == target.resolve():
                raise ValueError(f"refusing S3 key outside the artifacts folder: {obj['Key']}")
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(path))


def _collect(engine: Any, artifacts: Path) -> list[JobSummary]:
    """Describe every job the engine ran (every List page); copy its outputs and log into ``artifacts``."""
    from airflow_sm_provider.hooks.logs import JobLogTailer
    from airflow_sm_provider.job_kinds import KINDS, job_summary

    sagemaker, s3, logs = engine.client("sagemaker"), engine.client("s3"), engine.client("logs")
    records: list[JobSummary] = []
    for kind, spec in KINDS.items():
        pages = sagemaker.get_paginator(spec.list_method).paginate()
        for item in (item for page in pages for item in page[spec.list_key]):
            name = item[spec.name_key]
            summary = job_summary(kind, getattr(sagemaker, spec.describe_method)(**{spec.name_key: name}))
            records.append(summary)
            outputs = summary.get("outputs") or []
            if summary.get("model_artifacts"):
                outputs = [summary["model_artifacts"].rsplit("/", 1)[0]]  # model.tar.gz, output.tar.gz
            for uri in outputs:
                _download_prefix(s3, uri, artifacts / "jobs" / name / uri.rstrip("/").rsplit("/", 1)[-1])
            if lines := JobLogTailer(logs, spec.log_group, name).poll():
                (artifacts / "logs").mkdir(parents=True, exist_ok=True)
                (artifacts / "logs" / f"{name}.log").write_text(
                    "".join(f"{line.message}\n" for line in lines)
                )
    return records


def run_demo(artifacts: Path, dags_folder: Path, conf: dict[str, Any] | None = None) -> int:
    """Run the template DAG on a fresh local engine; return 0 when the DAG run succeeded."""
    from airflow_sm_provider.local import LocalEngine

    artifacts = artifacts.resolve()
    if artifacts.exists() and any(artifacts.iterdir()):
        if not (artifacts / "run-summary.json").exists():
            raise SystemExit(f"{artifacts} is not empty and holds no earlier demo run: choose another folder")
        shutil.rmtree(artifacts)  # the previous demo run's output
    artifacts.mkdir(parents=True, exist_ok=True)
    conf = {"bucket": DEMO_BUCKET, **(conf or {})}
    with tempfile.TemporaryDirectory(prefix="airflow-sm-demo-") as tmp, LocalEngine() as engine:
        env = _airflow_environment(Path(tmp) / "airflow", dags_folder.resolve(), engine.environ())
        engine.client("s3").create_bucket(Bucket=conf["bucket"])
        print(
            f"local SageMaker engine at {engine.endpoint_url}; Airflow home {env['AIRFLOW_HOME']}", flush=True
        )
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env={**os.environ, **env},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        result = subprocess.run(
            [sys.executable, "-m", "airflow_sm_provider.demo", "--run-dag", json.dumps(conf)],
            env={**os.environ, **env},
            check=False,
            capture_output=True,
            text=True,
        )
        (artifacts / "dag-test.log").write_text(result.stdout + result.stderr)
        lines = result.stdout.strip().splitlines()
        run = json.loads(lines[-1]) if result.returncode == 0 and lines else {}
        jobs = _collect(engine, artifacts)
    summary = {"dag_id": DAG_ID, "conf": conf, **run, "jobs": jobs}
    (artifacts / "run-summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    state = run.get("state", "failed")
    print(f"DAG run {state}: {len(jobs)} SageMaker jobs; artifacts in {artifacts}")
    for job in jobs:
        print(f"  {job['kind']:<10} {job['name']:<48} {job['status']}")
    if result.returncode != 0:
        print(f"dag.test() failed; see {artifacts / 'dag-test.log'}", file=sys.stderr)
    return 0 if state == "success" else 1


def _run_dag_in_this_process(conf: dict[str, Any]) -> None:
    """Child-process half: load the DAG from the DAGs folder and run ``dag.test()``.

    A separate process, because Airflow reads AIRFLOW_HOME and its settings at import.
    """
    from airflow_sm_provider._compat import load_dag_bag

    bag = load_dag_bag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(DAG_ID)
    dag_run = dag.test(run_conf=conf)
    tasks = {
        ti.task_id + ("" if ti.map_index < 0 else f"[{ti.map_index}]"): ti.state
        for ti in dag_run.get_task_instances()
    }
    print(json.dumps({"run_id": dag_run.run_id, "state": str(dag_run.state), "tasks": tasks}, default=str))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--run-dag":
        _run_dag_in_this_process(json.loads(sys.argv[2]))
