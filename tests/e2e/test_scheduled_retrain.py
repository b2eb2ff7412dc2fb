"""The scheduled retrain end to end on the local engine: real Airflow (``dag.test()`` on
SQLite), the engine over HTTP, SageMaker Experiments through the SDK, tags read back with Search.

The experiment is seeded as the training template leaves it, without paying for a template
run: the template's preprocessing script writes the data, and two tracked runs (through the
same tracker calls the training operator makes) carry the template's hyperparameters and
metric lines. Their jobs run a stub that prints a fixed loss (``10 x learning-rate``), so the
seeding costs no model training: the better one is the configuration to retrain, the poorer
one is recorded as champion by the retrain's own decision code. The retrain must then run the
real ``train.py`` with the better run's hyperparameters, beat that champion, take the title in
``champion.json`` and on the run tags, flip the old champion's tag, and report both. Before
that, an experiment with no completed run is refused at the lookup, with nothing created. The
other outcomes (a tie, a failed challenger) are the pure rules' unit tests.
"""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from jobs_support import upload_script

from airflow_sm_provider import s3_keys
from airflow_sm_provider.aws_args import AwsArgs
from airflow_sm_provider.champion import CHAMPION_DATE_TAG, CHAMPION_TAG
from airflow_sm_provider.reporting.model import Objective
from airflow_sm_provider.template_jobs import CHANNELS, training_request

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
SCRIPTS = DAGS_FOLDER / "sagemaker_scripts"
RETRAIN = "sagemaker_scheduled_retrain"
PREFIX = "retrain"
LOSS = Objective("validation:loss", "Minimize")
#: A job that prints the template's metric lines with a loss of 10 x its learning rate.
STUB = """
import json, os
hp = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")))
loss = 10 * float(hp["learning-rate"])
for epoch in range(1, int(hp["epochs"]) + 1):
    print(f"epoch={epoch} train_loss={loss} val_loss={loss} val_accuracy=0.5", flush=True)
"""


@pytest.fixture
def retrain_dag(dags_folder: Path, aws_env: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The retrain template as Airflow's bundle holds it, polling quickly for the engine's jobs."""
    monkeypatch.setenv("SAGEMAKER_PIPELINE_POLL_SECONDS", "1")
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__MIN_FIRST_POLL_SECONDS", "1")
    folder = dags_folder / "templates"
    if not folder.exists():
        shutil.copytree(DAGS_FOLDER, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return runpy.run_path(str(folder / f"{RETRAIN}.py"))["dag"]


def seed_experiment(engine: Any, params: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Two completed, tracked runs of the stub in the experiment: learning rate -> its run."""
    from airflow_sm_provider.naming import JobIdentity
    from airflow_sm_provider.tracking.base import TrackingConfig, open_tracker
    from airflow_sm_provider.tracking.records import run_end, run_start

    s3, sagemaker = engine.client("s3"), engine.client("sagemaker")
    subprocess.run(
        [sys.executable, str(SCRIPTS / "preprocess.py"), "--output-dir", str(tmp_path)], check=True
    )
    channels = {}
    for channel in CHANNELS:
        s3.upload_file(
            str(tmp_path / channel / f"{channel}.csv"), params["bucket"], f"data/{channel}/{channel}.csv"
        )
        channels[channel] = f"s3://{params['bucket']}/data/{channel}"
    code = upload_script(s3, params["bucket"], STUB)
    tracker, started = open_tracker(), {}
    for number, rate in enumerate(("0.05", "5.0"), start=1):
        request = training_request(
            f"seed-{uuid.uuid4().hex[:8]}",
            params,
            code=code,
            hyperparameters={"epochs": "3", "learning-rate": rate, "hidden-units": "16"},
            channels=channels,
            output_uri=f"s3://{params['bucket']}/models",
            checkpoint_uri=f"s3://{params['bucket']}/checkpoints/{number}",
        )
        identity = JobIdentity("default", "seed", params["experiment"], f"train-{number}")
        ref = tracker.start_run(
            TrackingConfig(params["experiment"]), identity, request["TrainingJobName"], run_start(request)
        )
        sagemaker.create_training_job(**request, **ref.job_fields)
        started[rate] = (ref, request["TrainingJobName"])
    for ref, job in started.values():
        while (describe := sagemaker.describe_training_job(TrainingJobName=job))["TrainingJobStatus"] in (
            "InProgress",
            "Stopping",
        ):
            time.sleep(0.5)
        assert describe["TrainingJobStatus"] == "Completed", describe.get("FailureReason")
        tracker.end_run(ref, run_end(describe))
    return {rate: ref for rate, (ref, _) in started.items()}


def champion_tags(sagemaker: Any, experiment: str) -> dict[str, dict[str, str]]:
    """Record name -> champion tags of every run of the experiment, as Search returns them."""
    pages = sagemaker.get_paginator("search").paginate(
        Resource="ExperimentTrialComponent",
        SearchExpression={
            "Filters": [{"Name": "Parents.ExperimentName", "Operator": "Equals", "Value": experiment}]
        },
    )
    return {
        result["TrialComponent"]["TrialComponentName"]: {
            tag["Key"]: tag["Value"]
            for tag in result["TrialComponent"].get("Tags", [])
            if tag["Key"] in (CHAMPION_TAG, CHAMPION_DATE_TAG)
        }
        for page in pages
        for result in page["Results"]
    }


def read_json(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.mark.e2e
@pytest.mark.timeout(900)  # a seeded experiment and a DAG run; test processes share two cores
def test_retrain_of_the_best_run_dethrones_a_poorer_champion(
    airflow_db: Path, retrain_dag: Any, engine: Any, s3_bucket: str, tmp_path: Path
) -> None:
    from airflow_sm_provider.retrain import find_source, record_decision
    from airflow_sm_provider.tracking.base import open_tracker

    s3, sagemaker = engine.client("s3"), engine.client("sagemaker")
    experiment = f"retrain-{time.time_ns() % 10**10}"
    params = {**retrain_dag.params.dump(), "bucket": s3_bucket, "prefix": PREFIX, "experiment": experiment}
    place = {
        "aws": AwsArgs(),
        "bucket": s3_bucket,
        "prefix": PREFIX,
        "experiment": experiment,
        "objective": LOSS,
    }

    # An experiment with no completed run: the lookup (the DAG's first task) refuses, creating nothing.
    with pytest.raises(
        ValueError, match=f"run sagemaker_training_pipeline first with experiment={experiment}"
    ):
        find_source(**place)
    assert s3.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0

    runs = seed_experiment(engine, params, tmp_path / "data")
    values = {
        run.ref.record: run.parameters["final.validation:loss"]
        for run in open_tracker().get_runs(list(runs.values()))
    }
    best, poorer = runs["0.05"], runs["5.0"]
    assert values == {best.record: 0.5, poorer.record: 50.0}
    seeded = record_decision(
        **place, challenger_job={"run": poorer.to_xcom()}, dag_id="seed", run_id="seed"
    )  # the poorer run becomes the first champion, as a first retrain would have made it
    assert seeded["outcome"] == "first-champion"

    dag_run = retrain_dag.test(run_conf={"bucket": s3_bucket, "prefix": PREFIX, "experiment": experiment})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    source = dag_run.get_task_instance("find_best").xcom_pull(task_ids="find_best", key="source")
    assert source["record"] == best.record
    assert source["hyperparameters"] == {"epochs": "3", "learning-rate": "0.05", "hidden-units": "16"}
    decided = dag_run.get_task_instance("decide").xcom_pull(task_ids="decide")
    assert decided["outcome"] == "challenger-wins", decided["reason"]

    # champion.json: the challenger (train.py itself, with the best run's hyperparameters), its value.
    document = read_json(s3, s3_bucket, s3_keys.champion_key(PREFIX, experiment))
    champion = document["champion"]
    assert champion["record"] == decided["champion"] == document["challenger"]["record"]
    assert champion["job"].startswith("challenger-") and champion["status"] == "Completed"
    assert 0 < champion["value"] < 50.0
    assert document["previous_champion"] == poorer.record and document["outcome"] == "challenger-wins"
    assert document["report"] == (
        f"s3://{s3_bucket}/{s3_keys.report_prefix(PREFIX, RETRAIN, dag_run.run_id)}report.html"
    )

    # The report compares the old champion's job with the challenger's.
    report = read_json(s3, s3_bucket, s3_keys.report_prefix(PREFIX, RETRAIN, dag_run.run_id) + "report.json")
    poorer_job = seeded["challenger"]["job"]
    assert sorted(run["name"] for run in report["runs"]) == sorted([champion["job"], poorer_job])
    assert report["runs"][0]["name"] == champion["job"]  # ranked first

    # The tags, read back through SageMaker Search: the title moved, the old champion's flipped.
    tags = champion_tags(sagemaker, experiment)
    assert tags[champion["record"]] == {CHAMPION_TAG: "true", CHAMPION_DATE_TAG: champion["since"]}
    assert tags[poorer.record][CHAMPION_TAG] == "false"
    assert tags[best.record] == {}
