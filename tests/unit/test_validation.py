from __future__ import annotations

import copy

import pytest

from airflow_sm_provider.errors import ConfigValidationError
from airflow_sm_provider.validation import (
    MAX_USER_TAGS,
    S3InputRef,
    coerce_integers,
    s3_inputs,
    validate_config,
)

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def training_config() -> dict:
    return {
        "TrainingJobName": "digits-lr0",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "image:latest", "TrainingInputMode": "File"},
        "HyperParameters": {"epochs": "3", "sagemaker_submit_directory": "s3://bucket/code/sourcedir.tar.gz"},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/data/train"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/models", "KmsKeyId": "alias/key"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "VpcConfig": {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
    }


def processing_config() -> dict:
    return {
        "ProcessingJobName": "digits-preprocess",
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": "image:latest"},
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": "s3://bucket/code/preprocess.py",
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "train",
                    "S3Output": {
                        "S3Uri": "s3://bucket/out/train",
                        "LocalPath": "/opt/ml/processing/output/train",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 10}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def problems(kind: str, config, **kwargs) -> dict[str, str]:
    with pytest.raises(ConfigValidationError) as info:
        validate_config(kind, config, **kwargs)
    assert all(field in str(info.value) for field, _ in info.value.problems)
    return dict(info.value.problems)


def test_valid_configs_pass_and_are_not_modified():
    for kind, config in (("training", training_config()), ("processing", processing_config())):
        before = copy.deepcopy(config)
        validate_config(kind, config)
        assert config == before


@pytest.mark.parametrize(
    ("kind", "mutate", "field", "rule"),
    [
        ("training", lambda c: c.pop("TrainingJobName"), "config.TrainingJobName", "is required"),
        ("training", lambda c: c.update(TrainingJobName="bad_name"), "config.TrainingJobName", "must match"),
        ("training", lambda c: c.update(TrainingJobName="-x"), "config.TrainingJobName", "must match"),
        ("training", lambda c: c.update(RoleArn="SageMakerRole"), "config.RoleArn", "IAM role ARN"),
        ("training", lambda c: c.update(RoleArn="arn:aws:iam::123:role/x"), "config.RoleArn", "IAM role ARN"),
        ("training", lambda c: c.pop("OutputDataConfig"), "config.OutputDataConfig", "is required"),
        ("training", lambda c: c.pop("ResourceConfig"), "config.ResourceConfig", "is required"),
        ("training", lambda c: c.pop("StoppingCondition"), "config.StoppingCondition", "is required"),
        (
            "training",
            lambda c: c["AlgorithmSpecification"].pop("TrainingInputMode"),
            "config.AlgorithmSpecification.TrainingInputMode",
            "is required",
        ),
        (
            "training",
            lambda c: c["AlgorithmSpecification"].pop("TrainingImage"),
            "config.AlgorithmSpecification",
            "TrainingImage or AlgorithmName",
        ),
        (
            "training",
            lambda c: c["OutputDataConfig"].update(S3OutputPath="bucket/models"),
            "config.OutputDataConfig.S3OutputPath",
            "must be an S3 URI",
        ),
        (
            "training",
            lambda c: c["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(S3Uri="s3://Bad_Bucket/x"),
            "config.InputDataConfig[0].DataSource.S3DataSource.S3Uri",
            "invalid bucket name",
        ),
        (
            "training",
            lambda c: c["InputDataConfig"].append(copy.deepcopy(c["InputDataConfig"][0])),
            "config.InputDataConfig[1].ChannelName",
            "duplicates",
        ),
        (
            "training",
            lambda c: c["ResourceConfig"].update(InstanceType="m5.large"),
            "config.ResourceConfig.InstanceType",
            "instance type",
        ),
        (
            "training",
            lambda c: c["ResourceConfig"].update(InstanceCount=0),
            "config.ResourceConfig.InstanceCount",
            "must be positive",
        ),
        (
            "training",
            lambda c: c["ResourceConfig"].update(VolumeSizeInGB="ten"),
            "config.ResourceConfig.VolumeSizeInGB",
            "must be an integer",
        ),
        (
            "training",
            lambda c: c["ResourceConfig"].update(InstanceCount=True),
            "config.ResourceConfig.InstanceCount",
            "must be an integer",
        ),
        (
            "training",
            lambda c: c["StoppingCondition"].update(MaxRuntimeInSeconds=28 * 86400 + 1),
            "config.StoppingCondition.MaxRuntimeInSeconds",
            "at most 2,419,200",
        ),
        (
            "training",
            lambda c: c.update(EnableManagedSpotTraining=True),
            "config.StoppingCondition.MaxWaitTimeInSeconds",
            "is required with EnableManagedSpotTraining",
        ),
        (
            "training",
            lambda c: (
                c.update(EnableManagedSpotTraining=True),
                c["StoppingCondition"].update(MaxWaitTimeInSeconds=60),
            ),
            "config.StoppingCondition.MaxWaitTimeInSeconds",
            ">= MaxRuntimeInSeconds",
        ),
        (
            "training",
            lambda c: c["HyperParameters"].update(epochs=3),
            "config.HyperParameters.epochs",
            "string",
        ),
        ("training", lambda c: c.update(Tags=[{"Key": "a"}]), "config.Tags[0].Value", "must be a string"),
        ("training", lambda c: c.update(InputDataConfig={}), "config.InputDataConfig", "must be a list"),
        (
            "processing",
            lambda c: c["StoppingCondition"].update(MaxRuntimeInSeconds=777_601),
            "config.StoppingCondition.MaxRuntimeInSeconds",
            "at most 777,600",
        ),
        ("processing", lambda c: c.pop("AppSpecification"), "config.AppSpecification", "is required"),
        (
            "processing",
            lambda c: c["ProcessingResources"]["ClusterConfig"].pop("InstanceType"),
            "config.ProcessingResources.ClusterConfig.InstanceType",
            "is required",
        ),
        (
            "processing",
            lambda c: c["ProcessingInputs"][0]["S3Input"].pop("LocalPath"),
            "config.ProcessingInputs[0].S3Input.LocalPath",
            "is required",
        ),
        (
            "processing",
            lambda c: c["ProcessingInputs"][0].pop("S3Input"),
            "config.ProcessingInputs[0]",
            "needs S3Input or DatasetDefinition",
        ),
        (
            "processing",
            lambda c: c["ProcessingOutputConfig"]["Outputs"][0]["S3Output"].update(S3Uri="file:///tmp/x"),
            "config.ProcessingOutputConfig.Outputs[0].S3Output.S3Uri",
            "must be an S3 URI",
        ),
        (
            "processing",
            lambda c: c["ProcessingInputs"].extend(copy.deepcopy(c["ProcessingInputs"]) * 10),
            "config.ProcessingInputs",
            "at most 10",
        ),
        ("processing", lambda c: c.update(Environment={"A": 1}), "config.Environment.A", "string"),
        # Environment limits differ per kind (TrainingEnvironmentValue 512, Processing 256).
        ("training", lambda c: c.update(Environment={"A": "x" * 513}), "config.Environment.A", "at most 512"),
        (
            "processing",
            lambda c: c.update(Environment={"A": "x" * 257}),
            "config.Environment.A",
            "at most 256",
        ),
        ("training", lambda c: c.update(Environment={"1A": "x"}), "config.Environment.1A", "must match"),
        ("processing", lambda c: c.update(Environment={"A-B": "x"}), "config.Environment.A-B", "must match"),
        (
            "processing",
            lambda c: c.update(Environment={f"V{i}": "x" for i in range(101)}),
            "config.Environment",
            "at most 100 entries",
        ),
        (
            "training",
            lambda c: c.update(HyperParameters={f"h{i}": "1" for i in range(101)}),
            "config.HyperParameters",
            "at most 100 entries",
        ),
        (
            "training",
            lambda c: c["HyperParameters"].update({"k" * 257: "1"}),
            "config.HyperParameters." + "k" * 257,
            "at most 256 characters",
        ),
        (
            "training",
            lambda c: c["HyperParameters"].update(epochs="1" * 2501),
            "config.HyperParameters.epochs",
            "at most 2500",
        ),
        (
            "training",
            lambda c: c["StoppingCondition"].update(MaxPendingTimeInSeconds=2_419_201),
            "config.StoppingCondition.MaxPendingTimeInSeconds",
            "at most 2,419,200",
        ),
        (
            "training",
            lambda c: c["StoppingCondition"].update(MaxPendingTimeInSeconds=600),
            "config.StoppingCondition.MaxPendingTimeInSeconds",
            "at least 1,800",
        ),
        (
            "training",
            lambda c: c.update(Tags=[{"Key": "airflow-sm:identity", "Value": "forged"}]),
            "config.Tags[0].Key",
            "reserved",
        ),
    ],
)
def test_each_rule_names_its_field(kind, mutate, field, rule):
    config = training_config() if kind == "training" else processing_config()
    mutate(config)
    found = problems(kind, config)
    assert field in found, found
    assert rule in found[field]


def test_name_leaves_room_for_identity_suffix():
    config = training_config()
    config["TrainingJobName"] = "a" * 50
    found = problems("training", config, name_max_length=40)
    assert "at most 40 characters" in found["config.TrainingJobName"]


def test_all_problems_reported_at_once():
    config = training_config()
    config["RoleArn"] = "role"
    config["ResourceConfig"]["InstanceCount"] = -1
    assert set(problems("training", config)) == {"config.RoleArn", "config.ResourceConfig.InstanceCount"}


def test_s3_operations_rejected_with_clear_message():
    config = training_config()
    config["S3Operations"] = {"S3CreateBucket": [{"Bucket": "b"}]}
    found = problems("training", config)
    assert "not part of the SageMaker API" in found["config.S3Operations"]


def test_config_must_be_a_dict():
    found = problems("processing", '{"ProcessingJobName": "x"}')
    assert "must be a dict" in found["config"]


def test_serverless_training_needs_no_resources():
    config = training_config()
    for key in ("ResourceConfig", "StoppingCondition", "AlgorithmSpecification"):
        config.pop(key)
    config["ServerlessJobConfig"] = {"BaseModelArn": "arn:x", "JobType": "FineTuning"}
    validate_config("training", config)


def test_https_s3_uris_pass_syntax_check():
    config = training_config()
    config["OutputDataConfig"]["S3OutputPath"] = "https://bucket.s3.amazonaws.com/models"
    validate_config("training", config)


def test_coerce_integers_converts_rendered_fields_only():
    config = training_config()
    config["ResourceConfig"].update(InstanceCount="2", VolumeSizeInGB=" 30 ")
    config["StoppingCondition"] = {"MaxRuntimeInSeconds": "3600", "MaxWaitTimeInSeconds": "7200"}
    config["HyperParameters"]["epochs"] = "3"
    result = coerce_integers("training", config)
    assert result["ResourceConfig"]["InstanceCount"] == 2
    assert result["ResourceConfig"]["VolumeSizeInGB"] == 30
    assert result["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert result["HyperParameters"]["epochs"] == "3"  # the API wants hyperparameters as text
    assert config["ResourceConfig"]["InstanceCount"] == "2"  # the input is not modified


def test_coerce_integers_walks_lists_and_leaves_bad_text_for_validation():
    config = training_config()
    config["ResourceConfig"] = {
        "InstanceGroups": [
            {"InstanceGroupName": "a", "InstanceType": "ml.m5.large", "InstanceCount": "2"},
            {"InstanceGroupName": "b", "InstanceType": "ml.c5.xlarge", "InstanceCount": "many"},
        ],
        "VolumeSizeInGB": "10",
    }
    result = coerce_integers("training", config)
    assert [g["InstanceCount"] for g in result["ResourceConfig"]["InstanceGroups"]] == [2, "many"]
    found = problems("training", result)
    assert "must be an integer" in found["config.ResourceConfig.InstanceGroups[1].InstanceCount"]


def test_coerce_integers_processing():
    config = processing_config()
    config["ProcessingResources"]["ClusterConfig"].update(InstanceCount="1", VolumeSizeInGB="20")
    config["StoppingCondition"]["MaxRuntimeInSeconds"] = "600"
    result = coerce_integers("processing", config)
    assert result["ProcessingResources"]["ClusterConfig"]["VolumeSizeInGB"] == 20
    assert result["StoppingCondition"]["MaxRuntimeInSeconds"] == 600


def test_s3_inputs_name_their_fields():
    assert s3_inputs("training", training_config()) == [
        S3InputRef("config.InputDataConfig[0].DataSource.S3DataSource.S3Uri", "s3://bucket/data/train", True),
        S3InputRef(
            "config.HyperParameters.sagemaker_submit_directory", "s3://bucket/code/sourcedir.tar.gz", False
        ),
    ]
    assert s3_inputs("processing", processing_config()) == [
        S3InputRef("config.ProcessingInputs[0].S3Input.S3Uri", "s3://bucket/code/preprocess.py", True)
    ]


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="unknown job kind"):
        validate_config("transform", {})


def test_environment_and_hyperparameters_at_their_limits_pass():
    training = training_config()
    training["Environment"] = {f"V_{i}": "x" * 512 for i in range(100)}
    training["HyperParameters"] = {"k" * 256: "1" * 2500}
    training["StoppingCondition"]["MaxPendingTimeInSeconds"] = 2_419_200
    processing = processing_config()
    processing["Environment"] = {"_A1": "x" * 256}
    validate_config("training", training)
    validate_config("processing", processing)


def test_user_tags_leave_room_for_the_identity_tags():
    """SageMaker takes 50 tags; the hook adds one per identity field (counted, not assumed)."""
    from airflow_sm_provider.naming import JobIdentity, identity_tags

    room = 50 - len(identity_tags(JobIdentity("ns", "dag", "run", "task"), "hash"))
    assert room == MAX_USER_TAGS
    config = training_config()
    config["Tags"] = [{"Key": f"k{i}", "Value": "v"} for i in range(room)]
    validate_config("training", config)
    config["Tags"].append({"Key": "one-more", "Value": "v"})
    assert f"at most {room} tags" in problems("training", config)["config.Tags"]


def test_runtime_limits_agree_with_the_local_engine():
    """Written twice on purpose (each side checks the other); they must still say the same."""
    from airflow_sm_provider.local.model import MAX_RUNTIME_SECONDS as ENGINE_LIMITS
    from airflow_sm_provider.validation import MAX_RUNTIME_SECONDS

    assert dict(ENGINE_LIMITS) == MAX_RUNTIME_SECONDS
