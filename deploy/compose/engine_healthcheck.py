"""Healthcheck of the compose stack's local engine: it answers S3 and SageMaker, and the demo bucket exists.

The engine keeps S3 in memory, so a restarted engine has lost the bucket: the healthcheck runs
every few seconds and creates it again, which makes "healthy" mean "ready for the template DAG".
"""

from __future__ import annotations

import os
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError

ENDPOINT = os.environ.get("SAGEMAKER_LOCAL_ENDPOINT", "http://127.0.0.1:4566")
BUCKET = os.environ.get("DEMO_BUCKET", "airflow-sm-demo")


def main() -> int:
    session = boto3.Session(
        aws_access_key_id=os.environ["SAGEMAKER_LOCAL_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["SAGEMAKER_LOCAL_SECRET_ACCESS_KEY"],
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    try:
        session.client("sagemaker", endpoint_url=ENDPOINT).list_training_jobs(MaxResults=1)
        s3 = session.client("s3", endpoint_url=ENDPOINT)
        try:
            s3.head_bucket(Bucket=BUCKET)
        except ClientError as error:
            if error.response["Error"]["Code"] not in {"404", "NoSuchBucket"}:
                raise
            s3.create_bucket(Bucket=BUCKET)
    except (BotoCoreError, ClientError) as error:
        print(f"engine not ready: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
