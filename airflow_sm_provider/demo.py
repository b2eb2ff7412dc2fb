"""The main job: the template DAG end to end on the local engine, artifacts to a folder.

It starts an embedded local SageMaker engine, points Airflow (a throwaway AIRFLOW_HOME on
SQLite) and every AWS client at it, runs ``sagemaker_training_pipeline`` with ``dag.test()``
(processing -> tracked training sweep -> one deferred wait -> live learning curves ->
comparison report), prints each task's end as it happens, then copies what the run produced
from the engine's S3 into the artifacts folder and prints the leaderboard:

    artifacts/
      report.html, report.json, runs.csv, metrics.csv    the comparison report
      plots/<metric>.png    every run's curve of one metric (same y-axis)
      charts/<job>/<metric>.png                          one job's curves
      experiments.json      the tracker's lookup of this DAG run's runs (SageMaker Experiments)
      run-summary.json      DAG run state, task states, one record per SageMaker job
      jobs/<job>/           model.tar.gz / output.tar.gz / processing outputs
      logs/<job>.log        the job's CloudWatch log, as the engine captured it
      dag-test.log          everything Airflow printed
"""

from __future__ import annotations

import json
import os
import re
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
DEMO_PREFIX = "digits-demo"
#: The demo's sweep: two sensible learning rates and one far too large, whose losses blow up,
#: so the report's health flags have something to show.
DEMO_CONF: dict[str, Any] = {
    "bucket": DEMO_BUCKET,
    "prefix": DEMO_PREFIX,
    "grid": {"learning-rate": [0.03, 0.3, 50.0], "hidden-units": [32]},
    "epochs": 30,
}
#: dag.test() log lines that name a task instance, that change its state, and that the
#: provider writes while it waits or tracks (shown at the console as the DAG runs).
_TASK_NAMED = re.compile(r"id=UUID\('([0-9a-f-]+)'\), task_id='([^']+)'.*?map_index=(-?\d+)")
_STATE_SET = re.compile(r"new_state=(\w+) .*ti_id=([0-9a-f-]+)")
_PROVIDER_NEWS = re.compile(r"\] ((?:Waiting on|Tracked as run|Published) [^\[]*?)\s*\[")
_RESULT_MARK = "AIRFLOW_SM_DEMO_RESULT "


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
        "SAGEMAKER_PIPELINE_REPLOT_SECONDS": "10",
        # ... and the first poll after a deferral need not wait the production minimum.
        "AIRFLOW__SAGEMAKER_PROVIDER__MIN_FIRST_POLL_SECONDS": "2",
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
    try:
        pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix))
    except s3.exceptions.NoSuchBucket:  # the engine outlives buckets; the job is still summarised
        return
    for page in pages:
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


def _copy_report(engine: Any, run_id: str, prefix: str, bucket: str, artifacts: Path) -> None:
    """Copy the DAG run's report, overlay plots and per-job charts from S3 into ``artifacts``."""
    from airflow_sm_provider import s3_keys

    s3 = engine.client("s3")
    report = s3_keys.report_prefix(prefix, DAG_ID, run_id)
    _download_prefix(s3, f"s3://{bucket}/{report}", artifacts)
    overlays = s3_keys.overlay_key(prefix, DAG_ID, run_id, "metric").rsplit("/", 1)[0]
    _download_prefix(s3, f"s3://{bucket}/{overlays}", artifacts / "plots")


def _copy_job_charts(engine: Any, jobs: list[JobSummary], prefix: str, bucket: str, artifacts: Path) -> None:
    from airflow_sm_provider import s3_keys

    s3 = engine.client("s3")
    for job in jobs:
        if job["kind"] == "training":
            charts = s3_keys.job_metric_key(prefix, job["name"], "metric").rsplit("/", 1)[0]
            _download_prefix(s3, f"s3://{bucket}/{charts}", artifacts / "charts" / job["name"])


def leaderboard(report: dict[str, Any]) -> list[str]:
    """The console's leaderboard: rank, run, hyperparameters, objective, health flags, status."""
    objective = report["objective"]
    flags: dict[str, list[str]] = {}
    for flag in report.get("health", []):
        flags.setdefault(flag["run"], []).append(f"{flag['rule']}@{flag['step']}")
    rows = [
        (
            "#",
            "run",
            "hyperparameters",
            f"{objective['metric']} ({objective['direction']})",
            "health",
            "status",
        )
    ]
    for run in [*report["runs"], *report.get("failed", [])]:
        params = " ".join(f"{k}={v}" for k, v in sorted(run.get("hyperparameters", {}).items()))
        value = (
            run.get("objective_final")
            if report.get("rank_by", "final") == "final"
            else run.get("objective_best")
        )
        rows.append(
            (
                str(run.get("rank") or "-"),
                run["name"],
                params,
                "-" if value is None else f"{value:.4g}",
                ", ".join(sorted(set(flags.get(run["name"], [])))) or "ok",
                f"{run['status']}: {run['failure_reason']}" if run.get("failure_reason") else run["status"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]


def _root_cause(log: str) -> str:
    """The most telling lines of a failed dag.test(): the last exception or error lines."""
    lines = log.splitlines()
    errors = [line for line in lines if re.search(r"(Error|Exception|error:|FAILED|failed)", line)]
    return "\n".join(errors[-6:]) if errors else "\n".join(lines[-10:])


def run_demo(artifacts: Path, dags_folder: Path, conf: dict[str, Any] | None = None) -> int:
    """Run the template DAG on a fresh local engine; return 0 when the DAG run succeeded."""
    from airflow_sm_provider.local import LocalEngine

    artifacts = artifacts.resolve()
    if artifacts.exists() and any(artifacts.iterdir()) and not (artifacts / "dag-test.log").exists():
        raise SystemExit(f"{artifacts} is not empty and holds no earlier demo run: choose another folder")
    if not (dags_folder / f"{DAG_ID}.py").exists():
        print(f"DAG {DAG_ID} not found in {dags_folder.resolve()}: run from a clone, or use --dags-folder")
        return 2
    if artifacts.exists():
        shutil.rmtree(artifacts)  # the previous demo run's output (complete or not)
    artifacts.mkdir(parents=True, exist_ok=True)
    conf = {**DEMO_CONF, **(conf or {})}
    with tempfile.TemporaryDirectory(prefix="airflow-sm-demo-") as tmp, LocalEngine() as engine:
        env = {
            **os.environ,
            **_airflow_environment(Path(tmp) / "airflow", dags_folder.resolve(), engine.environ()),
        }
        engine.client("s3").create_bucket(Bucket=conf["bucket"])
        print(
            f"local SageMaker engine at {engine.endpoint_url}; Airflow home {env['AIRFLOW_HOME']}", flush=True
        )
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        print(f"running {DAG_ID} with {json.dumps(conf)}", flush=True)
        run, log = _run_child(env, conf, artifacts / "dag-test.log")
        jobs = _collect(engine, artifacts)
        if run.get("run_id"):
            _copy_report(engine, run["run_id"], conf["prefix"], conf["bucket"], artifacts)
            _copy_job_charts(engine, jobs, conf["prefix"], conf["bucket"], artifacts)
    (artifacts / "experiments.json").write_text(json.dumps(run.pop("experiments", []), indent=2) + "\n")
    summary = {"dag_id": DAG_ID, "conf": conf, **run, "jobs": jobs}
    (artifacts / "run-summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    state = run.get("state", "failed")
    print(f"\nDAG run {state}: {len(jobs)} SageMaker jobs; artifacts in {artifacts}")
    if (artifacts / "report.json").exists():
        print("\n".join(leaderboard(json.loads((artifacts / "report.json").read_text()))))
        print(f"\nreport: {artifacts / 'report.html'}")
    if state != "success":
        print(
            f"\nthe DAG run failed; root cause:\n{_root_cause(log)}\n(full log: {artifacts / 'dag-test.log'})"
        )
    return 0 if state == "success" else 1


class _Progress:
    """Turns dag.test()'s log into short console lines: task ends and the provider's news."""

    def __init__(self) -> None:
        self.tasks: dict[str, str] = {}
        self.last = ""

    def read(self, line: str) -> str | None:
        if named := _TASK_NAMED.search(line):
            ti_id, task_id, map_index = named.groups()
            self.tasks[ti_id] = task_id if map_index == "-1" else f"{task_id}[{map_index}]"
        news = None
        if state := _STATE_SET.search(line):
            news = f"{self.tasks.get(state.group(2), 'a task')}: {state.group(1)}"
        elif provider := _PROVIDER_NEWS.search(line):
            news = provider.group(1).strip()
        if news is None or news == self.last:
            return None
        self.last = news
        return news


def _run_child(env: dict[str, str], conf: dict[str, Any], log_path: Path) -> tuple[dict[str, Any], str]:
    """Run dag.test() in a child process, echoing task progress; its result record and its log."""
    child = subprocess.Popen(
        [sys.executable, "-m", "airflow_sm_provider.demo", "--run-dag", json.dumps(conf)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    result: dict[str, Any] = {}
    progress = _Progress()
    with log_path.open("w") as log:
        for line in child.stdout:
            log.write(line)
            if line.startswith(_RESULT_MARK):
                result = json.loads(line[len(_RESULT_MARK) :])
            elif news := progress.read(line):
                print(f"  {news[:160]}", flush=True)
    child.wait()
    return result, log_path.read_text()


def _run_dag_in_this_process(conf: dict[str, Any]) -> None:
    """Child-process half: load the DAG from the DAGs folder, run ``dag.test()``, look up its runs.

    A separate process, because Airflow reads AIRFLOW_HOME and its settings at import.
    """
    from dataclasses import asdict

    from airflow_sm_provider._compat import load_dag_bag
    from airflow_sm_provider.aws_args import AwsArgs
    from airflow_sm_provider.operators.base import default_namespace
    from airflow_sm_provider.tracking.base import open_tracker

    bag = load_dag_bag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(DAG_ID)
    dag_run = dag.test(run_conf=conf)
    tasks = {
        ti.task_id + ("" if ti.map_index < 0 else f"[{ti.map_index}]"): ti.state
        for ti in dag_run.get_task_instances()
    }
    tracker = open_tracker(
        conf.get("tracking_backend", "experiments"), AwsArgs(), conf.get("mlflow_tracking_uri") or None
    )
    runs = tracker.find_runs(default_namespace(), DAG_ID, dag_run.run_id)
    record = {
        "run_id": dag_run.run_id,
        "state": str(dag_run.state),
        "tasks": tasks,
        "experiments": [asdict(run) for run in runs],
    }
    print(_RESULT_MARK + json.dumps(record, default=str), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--run-dag":
        _run_dag_in_this_process(json.loads(sys.argv[2]))
