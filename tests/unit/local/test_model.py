"""Validation of requests against botocore's SageMaker models, worded as AWS words it."""

from __future__ import annotations

import copy

import pytest

from airflow_sm_provider.local import model
from airflow_sm_provider.local.errors import SerializationException, UnknownOperation, ValidationException

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
TRAINING = {
    "TrainingJobName": "train-1",
    "RoleArn": ROLE,
    "AlgorithmSpecification": {"TrainingImage": "local/python", "TrainingInputMode": "File"},
    "HyperParameters": {"sagemaker_program": '"train.py"', "epochs": "3"},
    "InputDataConfig": [
        {
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/train"}},
        }
    ],
    "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    "Tags": [{"Key": "team", "Value": "ml"}],
}


def training(**changes: object) -> dict:
    """TRAINING with top-level members replaced (None removes one)."""
    request = copy.deepcopy(TRAINING)
    for key, value in changes.items():
        if value is None:
            request.pop(key)
        else:
            request[key] = value
    return request


def message(request: dict, operation: str = "CreateTrainingJob", service: str = "sagemaker") -> str:
    with pytest.raises(ValidationException) as err:
        model.validate(service, operation, request)
    return err.value.message


def test_a_valid_request_passes():
    assert model.validate("sagemaker", "CreateTrainingJob", TRAINING) is None


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("has space", "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"),
        ("-leading-dash", "Member must satisfy regular expression pattern"),
        ("x" * 64, "Member must have length less than or equal to 63"),
    ],
)
def test_illegal_or_too_long_job_name(name, rule):
    text = message(training(TrainingJobName=name))
    assert f"Value '{name}' at 'trainingJobName' failed to satisfy constraint: {rule}" in text


def test_pattern_must_match_the_whole_value():
    # The model's pattern is unanchored; "ok-name!" contains a match but is not one.
    assert "trainingJobName" in message(training(TrainingJobName="ok-name!"))


def test_role_arn_that_is_not_an_arn():
    text = message(training(RoleArn="SageMakerRole-is-not-an-arn"))
    assert "Value 'SageMakerRole-is-not-an-arn' at 'roleArn' failed to satisfy constraint: " in text
    assert "Member must satisfy regular expression pattern: arn:aws" in text


def test_unknown_instance_type_lists_the_enum():
    resources = {"InstanceType": "ml.fake.huge", "InstanceCount": 1, "VolumeSizeInGB": 5}
    text = message(training(ResourceConfig=resources))
    assert (
        "at 'resourceConfig.instanceType' failed to satisfy constraint: Member must satisfy enum value set: ["
        in text
    )
    assert "ml.m5.large" in text


def test_malformed_s3_uri():
    text = message(training(OutputDataConfig={"S3OutputPath": "s3:/bucket-without-slash"}))
    assert "at 'outputDataConfig.s3OutputPath'" in text


def test_list_items_are_addressed_one_based_with_member():
    channels = copy.deepcopy(TRAINING["InputDataConfig"]) * 2
    channels[1]["DataSource"]["S3DataSource"]["S3Uri"] = "ftp://elsewhere/data"
    text = message(training(InputDataConfig=channels))
    assert "at 'inputDataConfig.2.member.dataSource.s3DataSource.s3Uri'" in text


@pytest.mark.parametrize(
    "value", ["équipe", "数据", "データセット", "Привет-мир", "Ñandú-42", "a b:c/d=e+f-g@h_i.j"]
)
def test_unicode_letters_are_legal_in_tags(value):
    model.validate("sagemaker", "CreateTrainingJob", training(Tags=[{"Key": value, "Value": value}]))


@pytest.mark.parametrize("value", ["semi;colon", "quote'", "emoji🙂", "tab\tchar"])
def test_characters_outside_the_tag_pattern_are_rejected(value):
    text = message(training(Tags=[{"Key": "ok", "Value": value}]))
    assert "at 'tags.1.member.value'" in text
    assert r"\p{L}" in text


def test_missing_required_members_are_counted_and_null():
    text = message(training(RoleArn=None, OutputDataConfig=None))
    assert text.startswith("2 validation errors detected: ")
    assert "Value null at 'roleArn' failed to satisfy constraint: Member must not be null" in text
    assert "Value null at 'outputDataConfig' failed to satisfy constraint: Member must not be null" in text


def test_negative_max_runtime():
    text = message(training(StoppingCondition={"MaxRuntimeInSeconds": -5}))
    assert (
        "Value '-5' at 'stoppingCondition.maxRuntimeInSeconds' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    ) in text


@pytest.mark.parametrize(
    ("operation", "limit"),
    [("CreateTrainingJob", 2_419_200), ("CreateProcessingJob", 777_600)],
)
def test_documented_max_runtime(operation, limit):
    assert model.MAX_RUNTIME_SECONDS == {"training": 2_419_200, "processing": 777_600}
    path = ("StoppingCondition", "MaxRuntimeInSeconds")
    request = training() if operation == "CreateTrainingJob" else processing()
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": limit}
    model.validate("sagemaker", operation, request)
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": limit + 1}
    text = message(request, operation)
    assert text.startswith("1 validation error detected")  # reported once, model maximum or not
    assert "at 'stoppingCondition.maxRuntimeInSeconds' failed to satisfy constraint: " in text
    assert f"less than or equal to {limit}" in text
    assert limit == model.DOCUMENTED_MAXIMUMS[operation][path]


def processing() -> dict:
    return {
        "ProcessingJobName": "prep-1",
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": "local/python"},
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}
        },
    }


def test_map_values_report_once_with_the_members_rules():
    text = message(training(HyperParameters={"lr": "x" * 2501, "epochs": "3"}))
    assert text.startswith("1 validation error detected: ")
    assert "at 'hyperParameters' failed to satisfy constraint: Map value must satisfy constraint: [" in text
    assert "Member must have length less than or equal to 2500" in text


def test_list_length_limits():
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    assert "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50" in (
        message(training(Tags=tags))
    )


def test_wrong_json_type_is_a_serialization_error():
    with pytest.raises(SerializationException) as err:
        model.validate(
            "sagemaker", "CreateTrainingJob", training(StoppingCondition={"MaxRuntimeInSeconds": "60"})
        )
    assert err.value.code == "SerializationException" and err.value.status == 400
    assert "stoppingCondition.maxRuntimeInSeconds" in err.value.message


def test_booleans_are_not_integers():
    with pytest.raises(SerializationException):
        model.validate("sagemaker", "ListTrainingJobs", {"MaxResults": True})


def test_metrics_service_is_validated_too():
    request = {"TrialComponentName": "tc", "MetricData": []}
    text = message(request, "BatchPutMetrics", "sagemaker-metrics")
    assert (
        "at 'metricData' failed to satisfy constraint: Member must have length greater than or equal to 1"
        in text
    )


def test_unknown_operation():
    with pytest.raises(UnknownOperation) as err:
        model.validate("sagemaker", "LaunchRocket", {})
    assert err.value.code == "UnknownOperationException"


def test_every_pattern_in_the_sagemaker_model_compiles():
    service = model.service_model("sagemaker")
    patterns = {
        service.shape_for(name).metadata["pattern"]
        for name in service.shape_names
        if "pattern" in service.shape_for(name).metadata
    }
    assert len(patterns) > 100
    assert [p for p in patterns if model._compiled(p) is None] == []


def test_repeated_validation_compiles_no_pattern_again():
    """Compiling the model's patterns is the cost; a second request must reuse them all."""
    model.validate("sagemaker", "CreateTrainingJob", TRAINING)
    compiled = model._compiled.cache_info().misses
    model.validate("sagemaker", "CreateTrainingJob", TRAINING)
    assert model._compiled.cache_info().misses == compiled


@pytest.mark.parametrize(
    ("operation", "request_"),
    [
        ("CreateTrainingJob", training(Tags=[{"Key": "aws:cloudformation:stack-name", "Value": "x"}])),
        (
            "AddTags",
            {
                "ResourceArn": "arn:aws:sagemaker:us-east-1:1:training-job/a",
                "Tags": [{"Key": "AWS:x", "Value": "v"}],
            },
        ),
        (
            "DeleteTags",
            {"ResourceArn": "arn:aws:sagemaker:us-east-1:1:training-job/a", "TagKeys": ["ok", "aws:x"]},
        ),
        ("CreateExperiment", {"ExperimentName": "e", "Tags": [{"Key": "aws:x", "Value": "v"}]}),
    ],
)
def test_aws_tag_keys_are_reserved(operation, request_):
    with pytest.raises(ValidationException, match="must not start with 'aws:'"):
        model.validate("sagemaker", operation, request_)


def test_unknown_top_level_members_are_refused():
    with pytest.raises(ValidationException, match="'Junk'") as err:
        model.validate("sagemaker", "CreateTrainingJob", training(Junk="x" * 10_000))
    assert len(str(err.value)) < 300  # the member's name, not its value
