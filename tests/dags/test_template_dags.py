"""Every template DAG imports cleanly and reads well in the UI (params, docs, tags)."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dag_bag():
    from airflow_sm_provider._compat import load_dag_bag

    return load_dag_bag(str(DAGS_FOLDER))


def test_every_dag_imports_without_errors(dag_bag) -> None:
    assert dag_bag.import_errors == {}
    assert "sagemaker_training_pipeline" in dag_bag.dag_ids


def test_job_scripts_are_not_parsed_as_dags() -> None:
    ignore = (DAGS_FOLDER / ".airflowignore").read_text().split()
    assert "sagemaker_scripts/" in ignore


def test_pipeline_is_documented_and_parameterised(dag_bag) -> None:
    dag = dag_bag.dags["sagemaker_training_pipeline"]
    assert dag.doc_md and "Processing job" in dag.doc_md and "comparison report" in dag.doc_md
    params = dag.params
    for name in (
        "experiment",
        "bucket",
        "prefix",
        "role_arn",
        "processing_image",
        "training_image",
        "instance_type",
        "instance_count",
        "grid",
        "epochs",
        "objective_metric",
        "objective_direction",
        "use_spot",
        "max_wait_seconds",
        "max_runtime_seconds",
        "allow_partial_failure",
        "aws_conn_id",
    ):
        assert name in params, name
        assert params.get_param(name).schema.get("type"), name
    assert {"sagemaker", "template"} <= set(dag.tags)


def test_pipeline_waits_with_sensors_after_starting_jobs(dag_bag) -> None:
    dag = dag_bag.dags["sagemaker_training_pipeline"]
    assert dag.get_task("wait_preprocess").upstream_task_ids == {"preprocess"}
    assert dag.get_task("wait_training").upstream_task_ids == {"train"}
    assert dag.get_task("preprocess").wait_for_completion is False


def test_sweep_reports_every_outcome_and_gates_the_run_last(dag_bag) -> None:
    dag = dag_bag.dags["sagemaker_training_pipeline"]
    assert dag.get_task("learning_curves").upstream_task_ids == {"train"}
    assert dag.get_task("learning_curves").live is True
    report = dag.get_task("report")
    assert report.upstream_task_ids == {"train", "wait_training", "learning_curves"}
    assert report.trigger_rule == "all_done"
    outcome = dag.get_task("outcome")
    assert outcome.upstream_task_ids == {"report"} and outcome.trigger_rule == "all_done"
    assert {task.task_id for task in dag.leaves} == {"outcome"}
    for task_id in ("preprocess", "wait_preprocess", "train", "wait_training"):
        assert dag.get_task(task_id).retries >= 1, task_id


def test_bad_parameters_are_rejected_by_the_param_schema(dag_bag) -> None:
    import copy

    from airflow_sm_provider._compat import ParamValidationError

    params = copy.deepcopy(dag_bag.dags["sagemaker_training_pipeline"].params)
    with pytest.raises(ParamValidationError, match="grid"):
        params["grid"] = {"learning-rate": []}
    with pytest.raises(ParamValidationError, match="experiment"):
        params["experiment"] = "Has Spaces"


def template_module():
    """The template DAG file as a module, for its pure helpers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "template_dag", DAGS_FOLDER / "sagemaker_training_pipeline.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_job_kind_gets_a_runtime_limit_sagemaker_accepts(dag_bag) -> None:
    params = dag_bag.dags["sagemaker_training_pipeline"].params
    assert params.get_param("max_runtime_seconds").schema["maximum"] == 28 * 24 * 3600
    assert template_module().PROCESSING_MAX_RUNTIME_SECONDS == 777_600


def test_the_grid_gives_one_candidate_per_combination_in_a_stable_order() -> None:
    candidates = template_module().candidates
    grid = {"learning-rate": [0.03, 0.3], "hidden-units": [32, 64]}
    assert candidates(grid) == [
        {"hidden-units": "32", "learning-rate": "0.03"},
        {"hidden-units": "32", "learning-rate": "0.3"},
        {"hidden-units": "64", "learning-rate": "0.03"},
        {"hidden-units": "64", "learning-rate": "0.3"},
    ]
    with pytest.raises(ValueError, match=r"grid\['epochs'\]: must be a non-empty list"):
        candidates({"epochs": []})
    with pytest.raises(ValueError, match="at most 50"):
        candidates({"a": list(range(8)), "b": list(range(8))})
