"""The S3 input check the operators run before creating a job, against the engine's S3."""

from __future__ import annotations

import pytest

from airflow_sm_provider.aws_args import AwsArgs
from airflow_sm_provider.hooks.inputs import missing_s3_inputs
from airflow_sm_provider.validation import S3InputRef

pytestmark = pytest.mark.integration


def test_each_missing_input_is_named_with_its_field(aws_env, engine, s3_bucket):
    engine.client("s3").put_object(Bucket=s3_bucket, Key="data/train.csv", Body=b"1,2\n")
    refs = [
        S3InputRef("a", f"s3://{s3_bucket}/data/", prefix=True),
        S3InputRef("b", f"s3://{s3_bucket}/data/train.csv", prefix=False),
        S3InputRef("c", f"s3://{s3_bucket}/empty/", prefix=True),
        S3InputRef("d", f"s3://{s3_bucket}/data/missing.csv", prefix=False),
        S3InputRef("e", "s3://no-such-bucket-for-inputs/x", prefix=True),
    ]
    problems = dict(missing_s3_inputs(AwsArgs(aws_conn_id=None), refs))
    assert set(problems) == {"c", "d", "e"}
    assert "under the prefix" in problems["c"] and problems["d"].startswith("no S3 object exists at")
    assert "does not exist" in problems["e"]
    assert missing_s3_inputs(AwsArgs(aws_conn_id=None), []) == []
