"""Run and experiment names: the SDK's rules, checked before any call."""

from __future__ import annotations

import botocore.session
import pytest
import regex

from airflow_sm_provider.errors import ConfigValidationError
from airflow_sm_provider.naming import JobIdentity
from airflow_sm_provider.tracking.names import (
    MAX_NAME_LENGTH,
    MAX_RUN_PREFIX_LENGTH,
    check_run_prefix,
    dag_run_tags,
    experiment_name,
    record_name,
    run_name,
)

METRICS_MODEL = botocore.session.get_session().get_service_model("sagemaker-metrics")
#: BatchPutMetrics' TrialComponentName pattern: the tightest rule a run's record must meet.
RECORD_PATTERN = regex.compile(
    METRICS_MODEL.operation_model("BatchPutMetrics")
    .input_shape.members["TrialComponentName"]
    .metadata["pattern"]
)
IDENTITY = JobIdentity("prod", "sweep", "manual__2026-11-30T21:00:00+00:00", "train", 2)


def test_experiment_is_lower_cased_and_59_characters_is_the_limit():
    assert experiment_name("Digits-Sweep") == "digits-sweep"
    assert experiment_name("a" * MAX_NAME_LENGTH) == "a" * 59
    with pytest.raises(ConfigValidationError) as error:
        experiment_name("a" * 60)
    assert error.value.problems[0][0] == "experiment"
    assert "1 to 59 characters" in str(error.value) and "got 60 characters" in str(error.value)


@pytest.mark.parametrize("bad", ["", "-digits", "digits-", "digits_sweep", "digits sweep", "dígits", "a/b"])
def test_bad_characters_are_refused_naming_field_and_rule(bad: str):
    with pytest.raises(ConfigValidationError) as error:
        experiment_name(bad)
    ((field, rule),) = error.value.problems
    assert field == "experiment"
    assert "letters, digits and hyphens" in rule and repr(bad) in rule


def test_non_string_names_are_refused():
    with pytest.raises(ConfigValidationError, match="experiment: must be a string, not int"):
        experiment_name(42)


def test_run_prefix_leaves_room_for_the_identity_hash():
    assert check_run_prefix("LR-Sweep") == "lr-sweep"
    check_run_prefix("r" * MAX_RUN_PREFIX_LENGTH)
    with pytest.raises(ConfigValidationError) as error:
        check_run_prefix("r" * (MAX_RUN_PREFIX_LENGTH + 1))
    assert error.value.problems[0][0] == "run_name"


def test_run_name_is_deterministic_lower_case_and_fits_the_sdk():
    name = run_name("Digits_LR", IDENTITY)
    assert name == run_name("Digits_LR", IDENTITY)  # a retry continues the same run
    assert name.startswith("digits-lr-") and len(name) <= MAX_NAME_LENGTH
    other = JobIdentity(IDENTITY.namespace, IDENTITY.dag_id, IDENTITY.run_id, IDENTITY.task_id, 3)
    assert run_name("Digits_LR", other) != name  # each mapped task its own run
    long = run_name("x" * 80, IDENTITY)
    assert len(long) == MAX_NAME_LENGTH and RECORD_PATTERN.fullmatch(record_name("e" * 59, long))


def test_record_name_is_what_the_sdk_names_the_trial_component():
    from sagemaker.core.experiments.run import Run

    assert record_name("exp", "run-1") == Run._generate_trial_component_name("run-1", "exp") == "exp-run-1"


def test_dag_run_tags_hold_the_values_the_job_tags_hold():
    tags = dag_run_tags("prod", "sweep", "manual__2026-11-30T21:00:00+00:00")
    assert tags == {
        "airflow-sm:namespace": "prod",
        "airflow-sm:dag-id": "sweep",
        "airflow-sm:run-id": "manual__2026-11-30T21:00:00+00:00",
    }
