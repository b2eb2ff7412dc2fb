"""The shared AWS arguments: one spelling for templates, hooks and triggers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_sm_provider.aws_args import AWS_TEMPLATE_FIELDS, AwsArgs, aws_template_fields
from airflow_sm_provider.operators.jobs import TrainingJobOperator
from airflow_sm_provider.sensors.jobs import JobSensor
from airflow_sm_provider.triggers.jobs import JobStatusTrigger

ARGS = AwsArgs("conn", "eu-west-1", False, {"read_timeout": 5})


def test_hook_kwargs_use_the_hooks_name_for_the_botocore_config():
    assert ARGS.hook_kwargs() == {
        "aws_conn_id": "conn",
        "region_name": "eu-west-1",
        "verify": False,
        "config": {"read_timeout": 5},
    }
    assert ARGS.kwargs()["botocore_config"] == {"read_timeout": 5}


def test_template_fields_are_merged_once_in_order():
    assert aws_template_fields("config", "region_name") == (
        "config",
        "region_name",
        "aws_conn_id",
        "verify",
        "botocore_config",
    )
    assert set(AWS_TEMPLATE_FIELDS) <= set(TrainingJobOperator.template_fields)
    assert set(AWS_TEMPLATE_FIELDS) <= set(JobSensor.template_fields)


def test_operator_sensor_and_trigger_carry_the_same_arguments():
    op = TrainingJobOperator(task_id="t", config={}, **ARGS.kwargs())
    sensor = JobSensor(task_id="s", jobs="j", job_kind="training", **ARGS.kwargs())
    assert op.aws == sensor.aws == ARGS
    trigger = op._trigger("job-1")
    assert trigger.aws == ARGS
    _, kwargs = trigger.serialize()
    assert JobStatusTrigger(**kwargs).aws == ARGS


@pytest.mark.parametrize("module", ["aws_args", "errors", "events", "job_kinds", "validation", "status_poll"])
def test_pure_modules_import_neither_airflow_nor_botocore(module):
    heavy = "sorted({'airflow', 'botocore'} & set(sys.modules))"
    code = f"import sys, airflow_sm_provider.{module}; print({heavy})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
