"""The scheduled retrain end to end on the local engine, after the training template.

Real Airflow (``dag.test()`` on SQLite), the local engine over HTTP, SageMaker Experiments
through the SDK: the template trains a small sweep, then the retrain DAG runs twice. The first
retrain finds no champion, so its challenger takes the title; the second one trains the same
configuration on the same data with the script's fixed seed, so its challenger ties and the
champion stays. Before all that, a retrain of an empty experiment fails at its first task
and creates nothing.
"""

from __future__ import annotations

import json
import runpy
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_sm_provider import s3_keys
from airflow_sm_provider.champion import CHAMPION_DATE_TAG, CHAMPION_TAG

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
RETRAIN = "sagemaker_scheduled_retrain"
TEMPLATE = "sagemaker_training_pipeline"


@pytest.fixture
def templates(dags_folder: Path, aws_env: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The two template DAGs as Airflow's bundle holds them, polling quickly for the engine's jobs."""
    for key, value in {
        "SAGEMAKER_PIPELINE_POLL_SECONDS": "1",
        "SAGEMAKER_PIPELINE_REPLOT_SECONDS": "2",
        "AIRFLOW__SAGEMAKER_PROVIDER__MIN_FIRST_POLL_SECONDS": "1",
    }.items():
        monkeypatch.setenv(key, value)
    folder = dags_folder / "templates"
    if not folder.exists():
        shutil.copytree(DAGS_FOLDER, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return {dag_id: runpy.run_path(str(folder / f"{dag_id}.py"))["dag"] for dag_id in (TEMPLATE, RETRAIN)}


def states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


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
def test_retrain_crowns_a_first_champion_then_keeps_it_against_a_tie(
    airflow_db: Path, templates: dict[str, Any], engine: Any, s3_bucket: str
) -> None:
    s3, sagemaker = engine.client("s3"), engine.client("sagemaker")
    experiment = f"retrain-{time.time_ns() % 10**10}"
    conf = {"bucket": s3_bucket, "prefix": "retrain", "experiment": experiment}

    # An experiment with no completed run: the retrain stops at its lookup, creating nothing.
    empty = templates[RETRAIN].test(run_conf=conf)
    assert empty.state == "failed"
    assert states(empty)["find_best"] == "failed"
    assert {state for task, state in states(empty).items() if task != "find_best"} <= {
        "upstream_failed",
        None,
    }
    assert s3.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0
    assert not [
        job
        for job in sagemaker.list_training_jobs()["TrainingJobSummaries"]
        if "challenger" in job["TrainingJobName"]
    ]

    sweep = templates[TEMPLATE].test(
        run_conf={**conf, "grid": {"learning-rate": [0.05, 0.3], "hidden-units": [16]}, "epochs": 3}
    )
    assert sweep.state == "success", states(sweep)
    key = s3_keys.champion_key("retrain", experiment)

    first = templates[RETRAIN].test(run_conf=conf)
    assert first.state == "success", states(first)
    decided = first.get_task_instance("decide").xcom_pull(task_ids="decide")
    assert decided["outcome"] == "first-champion" and decided["challenger_eligible"]
    document = read_json(s3, s3_bucket, key)
    champion = document["champion"]
    assert champion["record"] == decided["champion"] == document["challenger"]["record"]
    assert champion["job"].startswith("challenger-") and champion["status"] == "Completed"
    source = first.get_task_instance("find_best").xcom_pull(task_ids="find_best", key="source")
    assert source["hyperparameters"]["epochs"] == "3" and source["value"] == pytest.approx(champion["value"])
    assert document["report"].endswith(
        f"/reports/{RETRAIN}/{s3_keys.encode_segment(first.run_id)}/report.html"
    )
    report = read_json(s3, s3_bucket, s3_keys.report_prefix("retrain", RETRAIN, first.run_id) + "report.json")
    assert sorted(run["name"] for run in report["runs"]) == sorted([champion["job"], source["job"]])
    tags = champion_tags(sagemaker, experiment)
    assert tags[champion["record"]] == {CHAMPION_TAG: "true", CHAMPION_DATE_TAG: champion["since"]}
    assert [record for record, tag in tags.items() if tag.get(CHAMPION_TAG) == "true"] == [champion["record"]]

    second = templates[RETRAIN].test(run_conf=conf)
    assert second.state == "success", states(second)
    decided = second.get_task_instance("decide").xcom_pull(task_ids="decide")
    assert decided["outcome"] == "champion-stays" and decided["champion"] == champion["record"]
    document = read_json(s3, s3_bucket, key)
    assert (
        document["champion"]["record"] == champion["record"]
        and document["champion"]["since"] == champion["since"]
    )
    challenger = document["challenger"]
    assert challenger["record"] != champion["record"] and challenger["value"] == pytest.approx(
        champion["value"]
    )
    report = read_json(
        s3, s3_bucket, s3_keys.report_prefix("retrain", RETRAIN, second.run_id) + "report.json"
    )
    assert sorted(run["name"] for run in report["runs"]) == sorted([champion["job"], challenger["job"]])
    tags = champion_tags(sagemaker, experiment)
    assert tags[champion["record"]][CHAMPION_TAG] == "true"
    assert tags[challenger["record"]][CHAMPION_TAG] == "false"
