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
    assert dag.doc_md and "Processing job" in dag.doc_md
    params = dag.params
    for name in ("bucket", "role_arn", "image_uri", "learning_rates", "epochs"):
        assert name in params, name
        assert params.get_param(name).schema.get("type"), name
    assert {"sagemaker", "template"} <= set(dag.tags)


def test_pipeline_waits_with_sensors_after_starting_jobs(dag_bag) -> None:
    dag = dag_bag.dags["sagemaker_training_pipeline"]
    assert dag.get_task("wait_preprocess").upstream_task_ids == {"preprocess"}
    assert dag.get_task("wait_training").upstream_task_ids == {"train"}
    assert dag.get_task("preprocess").wait_for_completion is False


def test_bad_parameters_are_rejected_by_the_param_schema(dag_bag) -> None:
    import copy

    from airflow_sm_provider._compat import ParamValidationError

    params = copy.deepcopy(dag_bag.dags["sagemaker_training_pipeline"].params)
    with pytest.raises(ParamValidationError, match="learning_rates"):
        params["learning_rates"] = [-1]


def test_each_job_kind_gets_a_runtime_limit_sagemaker_accepts(dag_bag) -> None:
    params = dag_bag.dags["sagemaker_training_pipeline"].params
    assert params.get_param("processing_max_runtime_seconds").schema["maximum"] == 777_600
    assert params.get_param("training_max_runtime_seconds").schema["maximum"] == 28 * 24 * 3600
