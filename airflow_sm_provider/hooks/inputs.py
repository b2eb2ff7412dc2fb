"""Check that a job's S3 inputs exist before the job is created (a missing input would only
fail the job minutes later, after SageMaker has provisioned its instances).

The operator lists what the config reads (``validation.s3_inputs``, pure); this hook asks S3.
"""

from __future__ import annotations

from collections.abc import Iterable

from airflow_sm_provider.aws_args import AwsArgs
from airflow_sm_provider.validation import S3InputRef, parse_s3_uri

#: S3 error codes that mean "no such object" (HeadObject answers a bare 404).
_MISSING_CODES = ("404", "NoSuchKey", "NotFound")


def missing_s3_inputs(aws: AwsArgs, refs: Iterable[S3InputRef]) -> list[tuple[str, str]]:
    """(field, problem) for each input that does not exist or cannot be checked.

    A prefix input needs at least one object under it, any other input the object itself.
    """
    refs = list(refs)
    if not refs:
        return []
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.exceptions import ClientError

    client = S3Hook(**aws.hook_kwargs()).conn
    problems: list[tuple[str, str]] = []
    for ref in refs:
        bucket, key = parse_s3_uri(ref.uri) or ("", "")
        try:
            if ref.prefix:
                found = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount", 0) > 0
            else:
                client.head_object(Bucket=bucket, Key=key)
                found = True
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                problems.append((ref.field, f"bucket {bucket!r} does not exist ({ref.uri})"))
                continue
            if code not in _MISSING_CODES:
                message = error.response.get("Error", {}).get("Message", "")
                problems.append((ref.field, f"cannot be checked: {code}: {message} ({ref.uri})"))
                continue
            found = False
        if not found:
            where = "under the prefix" if ref.prefix else "at"
            problems.append((ref.field, f"no S3 object exists {where} {ref.uri}"))
    return problems
