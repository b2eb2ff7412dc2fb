"""The training operator's tracking switch: checked before any call (no AWS here)."""

from __future__ import annotations

import pytest

from airflow_sm_provider.errors import ConfigValidationError
from airflow_sm_provider.operators.jobs import ProcessingJobOperator, TrainingJobOperator

CONFIG = {"TrainingJobName": "digits", "HyperParameters": {"lr": "0.1"}}


def test_untracked_by_default_and_tracked_with_an_experiment():
    assert TrainingJobOperator(task_id="t", config=CONFIG).tracking_config() is None
    assert ProcessingJobOperator(task_id="p", config={}).tracking_config() is None
    tracking = TrainingJobOperator(
        task_id="t", config=CONFIG, experiment="Digits", run_name="LR"
    ).tracking_config()
    assert (tracking.experiment, tracking.run_name, tracking.backend) == ("digits", "lr", "experiments")


def test_experiment_and_run_name_are_templated():
    assert {"experiment", "run_name", "config"} <= set(TrainingJobOperator.template_fields)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"run_name": "lr"}, "run_name"),  # a run name without an experiment
        (
            {"experiment": "e", "config": {**CONFIG, "ExperimentConfig": {"RunName": "x"}}},
            "config.ExperimentConfig",
        ),
        ({"experiment": "e" * 60}, "experiment"),
    ],
)
def test_conflicts_and_bad_names_name_their_field(arguments: dict, field: str):
    operator = TrainingJobOperator(task_id="t", **{"config": CONFIG, **arguments})
    with pytest.raises(ConfigValidationError) as error:
        operator.tracking_config()
    assert error.value.problems[0][0] == field
