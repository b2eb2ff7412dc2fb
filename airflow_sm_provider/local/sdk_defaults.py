"""The SageMaker Python SDK's defaults for the engine: no telemetry, a default bucket, a role.

Theory of operation. The SDK reads a user config file named by ``SAGEMAKER_USER_CONFIG_OVERRIDE``
(the engine's :meth:`~airflow_sm_provider.local.LocalEngine.environ` exports it). Without a
``DefaultS3Bucket`` there, ``Session.default_bucket()`` names the bucket
``sagemaker-{region}-{account}`` from ``sts:GetCallerIdentity`` on a client it builds with an
explicit AWS endpoint (``sts_regional_endpoint``), which ``AWS_ENDPOINT_URL`` does not override:
the SDK would reach AWS. With the name in the config it asks no STS and creates the bucket on
the engine's S3 when missing. The name is the one the SDK would derive for the engine's
account, so code that spells it out finds the same bucket.

Without a ``role``, ``ModelTrainer`` and the processors take ``SageMaker.TrainingJob.RoleArn``
/ ``SageMaker.ProcessingJob.RoleArn`` from the config; the engine gives them
:data:`DEFAULT_ROLE_NAME` of its account (any role of its account runs jobs; see :mod:`iam`).
Telemetry is opted out so neither clients nor jobs try to reach AWS.
"""

from __future__ import annotations

from airflow_sm_provider.local.iam import role_arn

#: The execution role the SDK's config names when a job gives none.
DEFAULT_ROLE_NAME = "SageMakerExecutionRole"


def default_bucket(region: str, account_id: str) -> str:
    """The SDK's default bucket name for ``account_id`` in ``region`` (``Session.default_bucket``)."""
    return f"sagemaker-{region}-{account_id}"


def sdk_config(region: str, account_id: str) -> str:
    """The SDK user config (YAML) of the module docstring."""
    role = role_arn(account_id, DEFAULT_ROLE_NAME)
    return (
        "SchemaVersion: '1.0'\n"
        "SageMaker:\n"
        "  PythonSDK:\n"
        "    Modules:\n"
        "      TelemetryOptOut: true\n"
        "      Session:\n"
        f"        DefaultS3Bucket: {default_bucket(region, account_id)}\n"
        "  TrainingJob:\n"
        f"    RoleArn: {role}\n"
        "  ProcessingJob:\n"
        f"    RoleArn: {role}\n"
    )
