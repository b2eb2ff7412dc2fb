"""The I/O of a retrain's champion: its document in S3 and the tags on the runs.

``{prefix}/champion/{experiment}.json`` (key from ``s3_keys.champion_key``) names the
experiment's champion run; the runs themselves carry ``airflow-sm:champion`` tags (SageMaker
``AddTags`` on the run's trial component ARN), so SageMaker Studio's run list shows the
champion too. What to write is decided by the pure ``champion`` module.

The clients come from the metrics hook (one AWS connection, the same retries and endpoint as
the plots and the report).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from airflow_sm_provider import s3_keys
from airflow_sm_provider.hooks.jobs import api_error

if TYPE_CHECKING:
    from airflow_sm_provider.champion import TagChange
    from airflow_sm_provider.hooks.metrics import SageMakerMetricsHook

JSON = "application/json"


class ChampionStore:
    """The champion document of one experiment, and the champion tags on its runs."""

    def __init__(self, hook: SageMakerMetricsHook, bucket: str, prefix: str, experiment: str) -> None:
        self.hook = hook
        self.uri = s3_keys.join_s3_uri(bucket, s3_keys.champion_key(prefix, experiment))

    def read(self) -> dict[str, Any] | None:
        """The document, or None when there is none yet; ``ValueError`` when it is not JSON."""
        bucket, key = s3_keys.parse_s3_uri(self.uri)
        try:
            body = self.hook.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise api_error(error, "GetObject") from error
        try:
            return json.loads(body)
        except ValueError as error:
            raise ValueError(f"{self.uri}: not JSON ({error}); fix or delete it") from None

    def write(self, document: Mapping[str, Any]) -> str:
        """Replace the document; returns its URI."""
        body = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
        return self.hook.upload(self.uri, body, JSON)

    def tag(self, changes: Sequence[TagChange]) -> None:
        """Put each change's tags on its run (a key it has is overwritten)."""
        sagemaker = self.hook.client("sagemaker")
        for change in changes:
            tags = [{"Key": key, "Value": value} for key, value in change.tags.items()]
            try:
                sagemaker.add_tags(ResourceArn=change.arn, Tags=tags)
            except ClientError as error:
                raise api_error(error, "AddTags") from error
