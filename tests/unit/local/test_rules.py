"""Create-time rules the model cannot express."""

from __future__ import annotations

import pytest

from airflow_sm_provider.local import rules
from airflow_sm_provider.local.errors import ValidationException


def training(volume_gb: int) -> dict:
    return {
        "AlgorithmSpecification": {"TrainingImage": "local/python", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": volume_gb},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }


def test_a_zero_gb_training_volume_is_refused():
    rules.check_training(training(1))
    with pytest.raises(ValidationException, match=r"ResourceConfig\.VolumeSizeInGB must be at least 1"):
        rules.check_training(training(0))  # botocore's model allows 0
