"""Configs SageMaker rejects fail the task at once, naming field and rule, and create nothing.

Each case runs the real operator against the local engine (real boto3, the engine's botocore
validation behind it) and lists the engine's jobs afterwards. Before the model-driven checks,
most of these reached the engine and failed as a retryable SageMakerApiError (or, for the rules
the API's shapes do not carry, started a job SageMaker would refuse).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from jobs_support import ROLE, TaskInstanceStub, training_config

from airflow_sm_provider._compat import AirflowFailException
from airflow_sm_provider.operators.jobs import ProcessingJobOperator, TrainingJobOperator

pytestmark = pytest.mark.integration
#: Never reached: a refused config makes no call at all.
BUCKET = "reliability-bucket"


@pytest.fixture(scope="module")
def sagemaker(engine) -> Any:
    """One SageMaker client on the engine for the module (a client costs ~0.5 s to build)."""
    return engine.client("sagemaker")


def processing_config(bucket: str) -> dict[str, Any]:
    return {
        "ProcessingJobName": "rel-proc",
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": "local/python:3", "ContainerEntrypoint": ["python3", "job.py"]},
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": f"s3://{bucket}/code/job.py",
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "out",
                    "S3Output": {
                        "S3Uri": f"s3://{bucket}/out",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation setting ``value`` at a dotted path (``[i]`` for list items)."""

    def mutate(config: dict) -> None:
        *parents, last = path.replace("[", ".").replace("]", "").split(".")
        node: Any = config
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value

    return mutate


def _metrics(definitions: list) -> Callable[[dict], None]:
    return _set("AlgorithmSpecification.MetricDefinitions", definitions)


TRAINING_CASES = [
    ("AlgorithmSpecification.TrainingInputMode", "file", "must be one of"),
    ("InputDataConfig[0].DataSource.S3DataSource.S3DataType", "Prefix", "must be one of"),
    ("InputDataConfig[0].DataSource.S3DataSource.S3DataDistributionType", "Sharded", "must be one of"),
    ("InputDataConfig[0].InputMode", "Stream", "must be one of"),
    ("AlgorithmSpecification.MetricDefinitions", [{"Name": "loss", "Regex": "x(1)"}] * 41, "at most 40"),
    ("AlgorithmSpecification.MetricDefinitions[0].Name", "", "at least 1 character"),
    ("AlgorithmSpecification.MetricDefinitions[0].Regex", None, "is required"),
    (
        "AlgorithmSpecification.MetricDefinitions",
        [{"Name": "loss", "Regex": "loss=("}],
        "not a valid regular",
    ),
    ("AlgorithmSpecification.MetricDefinitions", [{"Name": "loss", "Regex": "loss=\\S+"}], "capture group"),
    ("AlgorithmSpecification.MetricDefinitions", [{"Name": "l", "Regex": "(x)", "Unit": "s"}], "not a field"),
    ("StoppingCondition.MaxWaitTimeInSeconds", 7200, "only allowed with EnableManagedSpotTraining"),
    ("EnableManagedSpotTraining", "true", "must be a boolean"),
    ("VpcConfig", {"Subnets": [], "SecurityGroupIds": ["sg-1"]}, "at least 1 item"),
    ("VpcConfig", {"Subnets": ["subnet-1"], "SecurityGroupIds": []}, "at least 1 item"),
    ("TrainingJobTimeout", 3600, "not a field of CreateTrainingJobRequest"),
    ("AlgorithmSpecification.ContainerEntrypoint", "python train.py", "must be a list"),
    ("Tags", [{"Key": "aws:team", "Value": "ml"}], "AWS reserves the prefix"),
    ("Tags", [{"Key": "AWS:team", "Value": "ml"}], "AWS reserves the prefix"),
    ("OutputDataConfig.CompressionType", "ZIP", "must be one of"),
    ("EnableNetworkIsolation", "False", "must be a boolean"),
    ("RetryStrategy", {"MaximumRetryAttempts": 31}, "at most 30"),
]


@pytest.mark.parametrize(
    ("path", "value", "rule"), TRAINING_CASES, ids=[c[0] + "=" + repr(c[1])[:20] for c in TRAINING_CASES]
)
def test_bad_training_config_fails_without_retry_and_creates_nothing(sagemaker, path, value, rule):
    config = training_config(BUCKET, f"s3://{BUCKET}/code/sourcedir.tar.gz")
    config["InputDataConfig"] = [
        {
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/d"}},
        }
    ]
    if path.startswith("AlgorithmSpecification.MetricDefinitions["):
        config["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": "loss=(\\S+)"}]
    _set(path, value)(config)
    field = "config." + path
    assert_refused(sagemaker, TrainingJobOperator, config, field, rule)


PROCESSING_CASES = [
    ("ProcessingInputs[0].S3Input.S3InputMode", "Stream", "must be one of"),
    ("ProcessingInputs[0].S3Input.S3DataType", "Prefix", "must be one of"),
    ("ProcessingOutputConfig.Outputs[0].S3Output.S3UploadMode", "OnExit", "must be one of"),
    ("ProcessingInputs[0].S3Input.LocalPath", "/tmp/code", "must start with /opt/ml/processing/"),
    ("ProcessingInputs[0].S3Input.LocalPath", "/opt/ml/processing/../../etc", "hold no '..'"),
    ("ProcessingOutputConfig.Outputs[0].S3Output.LocalPath", "output", "must start with /opt/ml/processing/"),
    ("AppSpecification.ContainerEntrypoint", "python3 job.py", "must be a list"),
    ("AppSpecification.ContainerEntrypoint", [], "at least 1 item"),
    ("NetworkConfig", {"VpcConfig": {"Subnets": [], "SecurityGroupIds": ["sg-1"]}}, "at least 1 item"),
    ("Tags", [{"Key": "aws:cost-center", "Value": "1"}], "AWS reserves the prefix"),
    ("ProcessingTimeout", 60, "not a field of CreateProcessingJobRequest"),
]


@pytest.mark.parametrize(
    ("path", "value", "rule"), PROCESSING_CASES, ids=[c[0] + "=" + repr(c[1])[:20] for c in PROCESSING_CASES]
)
def test_bad_processing_config_fails_without_retry_and_creates_nothing(sagemaker, path, value, rule):
    config = processing_config(BUCKET)
    _set(path, value)(config)
    field = "config.NetworkConfig.VpcConfig.Subnets" if path == "NetworkConfig" else "config." + path
    assert_refused(sagemaker, ProcessingJobOperator, config, field, rule)


def assert_refused(sagemaker, operator_class: type, config: dict, field: str, rule: str) -> None:
    """The operator fails with AirflowFailException (Airflow skips retries) naming field and rule;
    the engine lists no new job and the operator knows no job name."""
    kind = operator_class.job_kind.value
    before = jobs_on_engine(sagemaker, kind)
    op = operator_class(task_id="job", config=copy.deepcopy(config), aws_conn_id=None, deferrable=False)
    with pytest.raises(AirflowFailException) as info:
        op.execute({"ti": TaskInstanceStub(task_id="job")})
    message = str(info.value)
    if field.startswith("config.VpcConfig"):
        field = "config.VpcConfig."  # Subnets or SecurityGroupIds, whichever the case empties
    line = next((line for line in message.splitlines() if field in line), "")
    assert rule in line, message
    assert op.job_name is None
    assert jobs_on_engine(sagemaker, kind) == before


def jobs_on_engine(client, kind: str) -> list[str]:
    """Every job of ``kind`` the engine lists."""
    if kind == "training":
        pages = client.get_paginator("list_training_jobs").paginate()
        return sorted(j["TrainingJobName"] for p in pages for j in p["TrainingJobSummaries"])
    pages = client.get_paginator("list_processing_jobs").paginate()
    return sorted(j["ProcessingJobName"] for p in pages for j in p["ProcessingJobSummaries"])


def test_instance_type_botocore_does_not_know_is_a_warning(sagemaker, aws_env, s3_bucket, capsys):
    """MWAA pins an older botocore than the newest instance types: the operator warns and lets
    SageMaker decide (here the engine, whose model refuses it: the refusal is not retried)."""
    config = training_config(s3_bucket, f"s3://{s3_bucket}/code/sourcedir.tar.gz")
    config["ResourceConfig"]["InstanceType"] = "ml.future99.large"
    op = TrainingJobOperator(
        task_id="job", config=config, aws_conn_id=None, deferrable=False, check_inputs_exist=False
    )
    before = jobs_on_engine(sagemaker, "training")
    with pytest.raises(AirflowFailException, match="SageMaker refused the training job's config") as info:
        op.execute({"ti": TaskInstanceStub(task_id="job")})
    assert "ValidationException" in str(info.value)
    assert "'ml.future99.large' is not an instance type this botocore knows" in capsys.readouterr().out
    assert jobs_on_engine(sagemaker, "training") == before


def test_server_side_validation_exception_is_not_retried(sagemaker, aws_env, s3_bucket):
    """A rule only the service checks (here the model's ``.*`` pattern, which refuses a newline
    in TrainingImage; the operator checks no patterns) fails the task with AirflowFailException."""
    config = training_config(s3_bucket, f"s3://{s3_bucket}/code/sourcedir.tar.gz")
    config["AlgorithmSpecification"]["TrainingImage"] = "local/python:3\nlatest"
    op = TrainingJobOperator(
        task_id="job", config=config, aws_conn_id=None, deferrable=False, check_inputs_exist=False
    )
    before = jobs_on_engine(sagemaker, "training")
    with pytest.raises(AirflowFailException, match="not retried"):
        op.execute({"ti": TaskInstanceStub(task_id="job")})
    assert jobs_on_engine(sagemaker, "training") == before


def test_the_service_model_loads_at_execute_never_at_dag_parse():
    """Building operators (what a DAG file does at parse time) must not load botocore's model."""
    from airflow_sm_provider import validation_model

    validation_model._create_shape.cache_clear()
    TrainingJobOperator(task_id="job", config=training_config(BUCKET, f"s3://{BUCKET}/c.tar.gz"))
    ProcessingJobOperator(task_id="proc", config=processing_config(BUCKET))
    assert validation_model._create_shape.cache_info().currsize == 0


def test_malformed_requests_are_final_and_not_transient():
    """What fails a task at once (``is_invalid_request``) is never polled again (``is_transient``)."""
    from botocore.exceptions import ParamValidationError

    from airflow_sm_provider.errors import SageMakerApiError, is_invalid_request, is_transient

    refused = SageMakerApiError(
        "CreateTrainingJob", "ValidationException", "1 validation error detected", 400
    )
    missing = SageMakerApiError("DescribeTrainingJob", "ValidationException", "Could not find job x", 400)
    throttled = SageMakerApiError("CreateTrainingJob", "ThrottlingException", "Rate exceeded", 400)
    client_side = ParamValidationError(report="Unknown parameter in input: 'Foo'")
    assert [is_invalid_request(e) for e in (refused, missing, throttled, client_side)] == [
        True,
        False,
        False,
        True,
    ]
    assert [is_transient(e) for e in (refused, throttled, client_side)] == [False, True, False]
