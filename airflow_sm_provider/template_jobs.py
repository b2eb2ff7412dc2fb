"""What the template DAGs share: their trigger-form Params, code staging and training requests.

``sagemaker_training_pipeline`` (the sweep) and ``sagemaker_scheduled_retrain`` (the
champion/challenger retrain) train the same script (``dags/sagemaker_scripts/train.py``) the
same way: one CreateTrainingJob request shape (:func:`training_request`), one set of metric
definitions for the lines the script prints, the same resources and stopping condition from
the same Params (:func:`training_params`), code staged by content hash (:func:`stage_code`).
Each DAG keeps what is its own (the sweep's grid and processing job; the retrain's lookup).

Parse cost: nothing heavy at import (the Airflow ``Param`` class and the S3 hook are imported
inside the functions that need them); DAG files import this module at parse time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

# A number as the job scripts print it: 0.123, 1e-05, nan, inf, -inf.
_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))"
METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": rf"train_loss={_NUMBER}"},
    {"Name": "validation:loss", "Regex": rf"val_loss={_NUMBER}"},
    {"Name": "validation:accuracy", "Regex": rf"val_accuracy={_NUMBER}"},
]
#: The data channels of the training script (``SM_CHANNEL_TRAIN``, ``SM_CHANNEL_VALIDATION``).
CHANNELS = ("train", "validation")
# The jobs' tasks and waits retry: a retried operator re-attaches to its job (job names derive
# from the task's identity, so no second job starts), and a wait failed by Airflow's defer race
# (see the README) recovers on its next try.
RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=30)}
AWS = {"aws_conn_id": "{{ params.aws_conn_id }}"}
S3_PLACE = {"bucket": "{{ params.bucket }}", "prefix": "{{ params.prefix }}"}
DEFAULT_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def poll_seconds() -> float:
    """First delay between the sensors' status polls (they back off from there), read when a DAG
    file is parsed: a minute suits jobs of minutes to days; the local demo sets a few seconds
    with ``SAGEMAKER_PIPELINE_POLL_SECONDS``."""
    return float(os.environ.get("SAGEMAKER_PIPELINE_POLL_SECONDS", "60"))


def run_uri(params: Mapping[str, Any], run_id: str | None, suffix: str) -> str:
    """S3 URI under this DAG run's own prefix (run ids hold ':' and '+', kept out of keys)."""
    run_key = re.sub(r"[^A-Za-z0-9_.-]", "-", run_id or "manual")
    return f"s3://{params['bucket']}/{params['prefix']}/runs/{run_key}/{suffix}"


def resources(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "InstanceCount": params["instance_count"],
        "InstanceType": params["instance_type"],
        "VolumeSizeInGB": 10,
    }


def stopping_condition(params: Mapping[str, Any]) -> dict[str, int]:
    condition = {"MaxRuntimeInSeconds": params["max_runtime_seconds"]}
    if params["use_spot"]:
        condition["MaxWaitTimeInSeconds"] = max(params["max_wait_seconds"], params["max_runtime_seconds"])
    return condition


def training_request(
    name: str,
    params: Mapping[str, Any],
    *,
    code: str,
    hyperparameters: Mapping[str, str],
    channels: Mapping[str, str],
    output_uri: str,
    checkpoint_uri: str,
) -> dict[str, Any]:
    """A CreateTrainingJob request for ``train.py``: its code, data channels and hyperparameters.

    :param code: S3 URI of the staged ``sourcedir.tar.gz`` (:func:`stage_code`).
    :param channels: channel name -> S3 prefix of its CSV files.
    """
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": params["role_arn"],
        "AlgorithmSpecification": {
            "TrainingImage": params["training_image"],
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "HyperParameters": {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": code,
            **hyperparameters,
        },
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
            }
            for channel, uri in channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": output_uri},
        "CheckpointConfig": {"S3Uri": checkpoint_uri},
        "ResourceConfig": resources(params),
        "StoppingCondition": stopping_condition(params),
    }
    if params["use_spot"]:
        request["EnableManagedSpotTraining"] = True
    return request


def stage_code(params: Mapping[str, Any], scripts_dir: Path) -> dict[str, str]:
    """Upload the job scripts to ``{prefix}/code/``, keyed by content hash: their S3 URIs.

    ``preprocess``: the processing script alone; ``train``: the folder as ``sourcedir.tar.gz``.
    """
    from airflow_sm_provider.hooks.code import CodeStager

    stager = CodeStager(params["bucket"], f"{params['prefix']}/code", aws_conn_id=params["aws_conn_id"])
    return {
        "preprocess": stager.script(scripts_dir / "preprocess.py"),
        "train": stager.source_dir(scripts_dir),
    }


def training_params(own: Mapping[str, Any]) -> dict[str, Any]:
    """The trigger-form Params of a template: where, as whom, on what, how long, plus ``own``.

    ``own`` (the sweep's grid, the retrain's margin) shows after the instances, before the
    objective, in the form's order.
    """
    from airflow.providers.common.compat.sdk import Param

    return {
        "experiment": Param(
            "digits-sweep",
            type="string",
            pattern=r"^[a-z0-9](-*[a-z0-9]){0,58}$",
            title="Experiment",
            description="SageMaker Experiments experiment of the runs (lower case, up to 59 characters).",
        ),
        "bucket": Param(
            "airflow-sm-demo",
            type="string",
            pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
            title="S3 bucket",
            description="For code, data, models, charts and the report (must exist).",
        ),
        "prefix": Param(
            "digits-demo",
            type="string",
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$",
            title="S3 prefix",
            description="Key prefix under the bucket for everything this pipeline writes.",
        ),
        "role_arn": Param(
            "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
            type="string",
            pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$",
            title="SageMaker execution role",
            description="IAM role the jobs run as (the Airflow role needs iam:PassRole on it).",
        ),
        "training_image": Param(
            DEFAULT_IMAGE,
            type="string",
            title="Training image",
            description="Image of the training jobs; the region's account id differs outside us-east-1.",
        ),
        "instance_type": Param(
            "ml.m5.large", type="string", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$", title="Instance type"
        ),
        "instance_count": Param(1, type="integer", minimum=1, maximum=20, title="Instances per job"),
        **own,
        "objective_metric": Param(
            "validation:loss",
            type="string",
            enum=[d["Name"] for d in METRIC_DEFINITIONS],
            title="Objective metric",
            description="The metric the runs are ranked by (its final value).",
        ),
        "objective_direction": Param(
            "Minimize", type="string", enum=["Minimize", "Maximize"], title="Objective direction"
        ),
        "use_spot": Param(False, type="boolean", title="Managed spot training"),
        "max_wait_seconds": Param(
            7200,
            type="integer",
            minimum=60,
            maximum=2_419_200,
            title="Spot: max wait (s)",
            description="With spot: how long a job may wait for capacity and run (≥ max runtime).",
        ),
        "max_runtime_seconds": Param(
            3600,
            type="integer",
            minimum=60,
            maximum=2_419_200,
            title="Max runtime (s)",
            description="StoppingCondition of every job (training up to 28 days; processing is capped at 9).",
        ),
        "aws_conn_id": Param("aws_default", type="string", title="AWS connection id"),
        "notify_sns_topic_arn": Param(
            "",
            type="string",
            pattern=r"^$|^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$",
            title="Notify: SNS topic ARN",
            description="When set, failed jobs (reason, console link) are published to this topic.",
        ),
        "notify_slack_conn_id": Param(
            "",
            type="string",
            pattern=r"^[A-Za-z0-9_.-]{0,250}$",
            title="Notify: Slack webhook connection",
            description="When set, failed jobs are posted through this Slack incoming-webhook connection.",
        ),
    }


def failure_notifications() -> dict[str, Any]:
    """``on_failure_callback`` for the job and wait tasks: opt-in failure notifications.

    The failed jobs with their reasons and console links go to the SNS topic and/or Slack
    connection the params name (``notify_*`` of :func:`training_params`); nothing is sent
    while both are empty.
    """
    from airflow_sm_provider.notifications.notifier import SageMakerJobsNotifier

    return {
        "on_failure_callback": SageMakerJobsNotifier(
            sns_topic_arn="{{ params.notify_sns_topic_arn }}",
            slack_webhook_conn_id="{{ params.notify_slack_conn_id }}",
            **AWS,
        )
    }
