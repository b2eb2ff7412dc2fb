"""The AWS arguments every operator, sensor and trigger of this provider takes, in one place.

An operator (or sensor, or trigger) declares the four arguments in its ``__init__`` (Airflow
applies ``default_args`` and checks ``partial()`` / ``expand()`` arguments against the
operator's own signature, so they cannot hide in a mixin's ``__init__``), stores them with
:meth:`AwsArgs.apply`, lists them in its template fields with :func:`aws_template_fields`, and
reads them back, rendered, from :attr:`AwsArgsMixin.aws`::

    class MyOperator(AwsArgsMixin, BaseOperator):
        template_fields = aws_template_fields("bucket")

        def __init__(self, *, bucket, aws_conn_id="aws_default", region_name=None,
                     verify=None, botocore_config=None, **kwargs):
            super().__init__(**kwargs)
            AwsArgs(aws_conn_id, region_name, verify, botocore_config).apply(self)

        def execute(self, context):
            s3 = S3Hook(**self.aws.hook_kwargs()).conn

This is our own small version of the Amazon provider's ``aws_template_fields`` /
``AwsBaseHookMixin``: importing theirs costs about 120 ms at DAG parse, this costs nothing
(stdlib only, no boto3, no Airflow).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["AWS_TEMPLATE_FIELDS", "AwsArgs", "AwsArgsMixin", "aws_template_fields"]


@dataclass(frozen=True)
class AwsArgs:
    """How to reach AWS.

    :param aws_conn_id: Airflow AWS connection (its ``endpoint_url`` extra may point at the
        local engine); None uses boto3's default credential chain.
    :param region_name: AWS region; default from the connection or boto3.
    :param verify: TLS verification for boto3 (bool or CA bundle path).
    :param botocore_config: botocore ``Config`` options as a dict.
    """

    aws_conn_id: str | None = "aws_default"
    region_name: str | None = None
    verify: bool | str | None = None
    botocore_config: dict[str, Any] | None = None

    def kwargs(self) -> dict[str, Any]:
        """The four arguments under their own names: for a trigger's constructor and ``serialize``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def hook_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of any ``AwsBaseHook`` (which calls the botocore options ``config``)."""
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "config": self.botocore_config,
        }

    def apply(self, target: object) -> None:
        """Store the four arguments as attributes of ``target`` (where templating renders them)."""
        for name, value in self.kwargs().items():
            setattr(target, name, value)


#: The template fields of the four arguments.
AWS_TEMPLATE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(AwsArgs))


def aws_template_fields(*names: str) -> tuple[str, ...]:
    """``names`` followed by the AWS arguments' template fields, each once."""
    return tuple(dict.fromkeys((*names, *AWS_TEMPLATE_FIELDS)))


class AwsArgsMixin:
    """For classes that hold the four arguments as attributes (set with :meth:`AwsArgs.apply`)."""

    aws_conn_id: str | None
    region_name: str | None
    verify: bool | str | None
    botocore_config: dict[str, Any] | None

    @property
    def aws(self) -> AwsArgs:
        """The arguments as they are now: rendered, once templating has run."""
        return AwsArgs(self.aws_conn_id, self.region_name, self.verify, self.botocore_config)
