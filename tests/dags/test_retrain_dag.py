"""The scheduled retrain template: its shape, Params and schedule (no AWS; the run is in tests/e2e)."""

from __future__ import annotations

import copy
import runpy
from pathlib import Path
from typing import Any

import pytest

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "sagemaker_scheduled_retrain.py"


@pytest.fixture(scope="module")
def module() -> dict[str, Any]:
    return runpy.run_path(str(DAG_FILE))


def test_retrain_is_documented_scheduled_and_parameterised(module: dict[str, Any]) -> None:
    dag = module["dag"]
    assert dag.dag_id == "sagemaker_scheduled_retrain"
    assert "champion" in dag.doc_md and "sagemaker_training_pipeline" in dag.doc_md
    assert dag.catchup is False and dag.max_active_runs == 1
    for name in ("experiment", "bucket", "prefix", "role_arn", "training_image", "objective_metric"):
        assert dag.params.get_param(name).schema.get("title"), name
    for name in ("min_delta", "data_prefix"):
        param = dag.params.get_param(name)
        assert param.schema.get("title") and param.description, name
    assert {"sagemaker", "template"} <= set(dag.tags)


def test_schedule_comes_from_the_environment(module: dict[str, Any]) -> None:
    setting = module["schedule_setting"]
    assert setting(None) == "@weekly"
    assert setting(" 0 3 * * 1 ") == "0 3 * * 1"
    assert setting("none") is None and setting("None") is None


def test_nothing_is_created_before_the_lookup_and_the_decision_comes_last(module: dict[str, Any]) -> None:
    dag = module["dag"]
    assert dag.get_task("find_best").upstream_task_ids == set()
    assert dag.get_task("stage_code").upstream_task_ids == {"find_best"}
    assert dag.get_task("wait").upstream_task_ids == {"train"}
    assert dag.get_task("train").wait_for_completion is False
    report, decide = dag.get_task("report"), dag.get_task("decide")
    assert {"find_best", "train", "wait"} <= report.upstream_task_ids
    assert "report" in decide.upstream_task_ids
    assert {task.task_id for task in dag.leaves} == {"decide"}
    # After a failed challenger both still run; after a failed lookup neither does.
    assert report.trigger_rule == decide.trigger_rule == module["AFTER_THE_CHALLENGER"]
    assert module["AFTER_THE_CHALLENGER"] in ("all_done_min_one_success", "all_done")
    for task_id in ("find_best", "train", "wait", "decide"):
        assert dag.get_task(task_id).retries >= 1, task_id


def test_bad_parameters_are_rejected_by_the_param_schema(module: dict[str, Any]) -> None:
    from airflow_sm_provider._compat import ParamValidationError

    params = copy.deepcopy(module["dag"].params)
    with pytest.raises(ParamValidationError, match="min_delta"):
        params["min_delta"] = -1
    with pytest.raises(ParamValidationError, match="data_prefix"):
        params["data_prefix"] = "/local/path"
    params["data_prefix"] = "s3://my-bucket/fresh/2026-12"
