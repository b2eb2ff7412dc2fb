"""Extra links from a task to its SageMaker job's console page, in every AWS partition.

Like the Amazon provider's ``BaseAwsLink``, the operator persists the link's data (region,
partition, job name) to XCom in ``execute`` and ``get_link`` formats it. We do not subclass
``BaseAwsLink``: its module pulls in ``airflow.providers.amazon.aws.utils`` and the common
compat SDK at DAG-parse time, and it only knows three partitions. This class sits on the
task SDK's ``BaseOperatorLink`` (already imported by every operator) and reads XCom lazily.
The console URL fragment of each kind comes from the job-kind table.

A link is a convenience: ``persist`` runs after the job was created, so it never fails the
task (an ARN it cannot parse is logged and leaves no link).

A tracked run (SageMaker Experiments) has no console page of its own: it opens in SageMaker
Studio, which needs the Studio domain. With ``[sagemaker_provider] studio_domain_id`` set,
:class:`TrackedRunLink` opens that domain's Studio, where the experiment lists the run by the
name the task's XCom shows (Studio documents no deep link to one run); without it, the link
is the training job's console page.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_sm_provider._compat import BaseOperatorLink, conf
from airflow_sm_provider.job_kinds import KINDS, JobKind

if TYPE_CHECKING:
    from airflow_sm_provider._compat import BaseOperator, Context

# Console host per partition. aws, aws-cn, aws-us-gov and aws-eusc are published; aws-iso and
# aws-iso-b follow the console.<partition DNS suffix> pattern those regions use. No public
# source names the console of aws-iso-e / aws-iso-f: no link there rather than a wrong one.
CONSOLE_DOMAINS = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
    "aws-eusc": "console.amazonaws-eusc.eu",
    "aws-iso": "console.c2s.ic.gov",
    "aws-iso-b": "console.sc2s.sgov.gov",
}
log = logging.getLogger(__name__)
#: CreatePresignedDomainUrl's DomainId pattern: a configured id is used in a URL only if it matches.
STUDIO_DOMAIN_PATTERN = re.compile(r"d-(-*[a-z0-9]){1,61}")


def console_url(kind: str, *, partition: str, region_name: str, job_name: str) -> str:
    """The job's page in the SageMaker console; "" for a partition without a known console."""
    domain = CONSOLE_DOMAINS.get(partition)
    if not domain or not region_name or not job_name:
        return ""
    return f"https://{domain}/sagemaker/home?region={region_name}#/{KINDS[JobKind(kind)].console_path}/{job_name}"


def studio_url(*, partition: str, region_name: str, domain_id: str) -> str:
    """The Studio of a domain ("" outside the ``aws`` partition or for an id that is not one)."""
    if partition != "aws" or not region_name or not STUDIO_DOMAIN_PATTERN.fullmatch(domain_id):
        return ""
    return f"https://{domain_id}.studio.{region_name}.sagemaker.aws/"


def arn_location(arn: str) -> tuple[str, str]:
    """(partition, region) of an ARN such as ``arn:aws-cn:sagemaker:cn-north-1:...``."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[1], parts[3]


class SageMakerJobLink(BaseOperatorLink):
    """Console link of the job an operator started; the subclasses only name the kind."""

    name: ClassVar[str]
    key: ClassVar[str]
    kind: ClassVar[str]

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        from airflow_sm_provider._compat import XCom

        data = XCom.get_value(key=self.key, ti_key=ti_key)
        if not isinstance(data, dict):
            return ""
        return console_url(
            self.kind,
            partition=data.get("partition", ""),
            region_name=data.get("region_name", ""),
            job_name=data.get("job_name", ""),
        )

    @classmethod
    def persist(cls, context: Context, operator: BaseOperator, *, job_name: str, job_arn: str) -> None:
        """Store the link's data in XCom (the job's partition and region come from its ARN)."""
        if not operator.do_xcom_push:
            return
        try:
            partition, region_name = arn_location(job_arn)
        except ValueError as error:
            log.warning("No console link for SageMaker job %s: %s", job_name, error)
            return
        context["ti"].xcom_push(
            key=cls.key, value={"partition": partition, "region_name": region_name, "job_name": job_name}
        )


class TrainingJobLink(SageMakerJobLink):
    """Link to a training job in the SageMaker console."""

    name = "SageMaker Training Job"
    key = "sagemaker_training_job_link"
    kind = "training"


class ProcessingJobLink(SageMakerJobLink):
    """Link to a processing job in the SageMaker console."""

    name = "SageMaker Processing Job"
    key = "sagemaker_processing_job_link"
    kind = "processing"


class TrackedRunLink(SageMakerJobLink):
    """The training task's tracked run: in Studio when a domain is configured, else its job's page."""

    name = "SageMaker Experiments Run"
    key = "sagemaker_tracked_run_link"
    kind = "training"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        domain_id = conf.get("sagemaker_provider", "studio_domain_id", fallback="") or ""
        if domain_id:
            from airflow_sm_provider._compat import XCom

            data = XCom.get_value(key=self.key, ti_key=ti_key)
            if isinstance(data, dict):
                url = studio_url(
                    partition=data.get("partition", ""),
                    region_name=data.get("region_name", ""),
                    domain_id=domain_id,
                )
                if url:
                    return url
        return super().get_link(operator, ti_key=ti_key)


def s3_console_url(*, partition: str, region_name: str, bucket: str, key: str) -> str:
    """The S3 console page of one object; "" for a partition without a known console."""
    from urllib.parse import quote

    domain = CONSOLE_DOMAINS.get(partition)
    if not domain or not bucket or not key:
        return ""
    return (
        f"https://{domain}/s3/object/{quote(bucket)}?region={quote(region_name)}&prefix={quote(key, safe='')}"
    )


class ComparisonReportLink(BaseOperatorLink):
    """The comparison report a ``ComparisonReportOperator`` wrote: its ``report.html`` in the S3 console."""

    name = "Comparison report"
    key = "sagemaker_comparison_report_link"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        from airflow_sm_provider._compat import XCom

        data = XCom.get_value(key=self.key, ti_key=ti_key)
        if not isinstance(data, dict):
            return ""
        return s3_console_url(
            partition=data.get("partition", ""),
            region_name=data.get("region_name", ""),
            bucket=data.get("bucket", ""),
            key=data.get("report_key", ""),
        )

    @classmethod
    def persist(
        cls,
        context: Context,
        operator: BaseOperator,
        *,
        partition: str,
        region_name: str,
        bucket: str,
        key: str,
    ) -> None:
        """Store where the report is (bucket, key, region, partition) for ``get_link``."""
        if operator.do_xcom_push:
            context["ti"].xcom_push(
                key=cls.key,
                value={
                    "partition": partition,
                    "region_name": region_name,
                    "bucket": bucket,
                    "report_key": key,
                },
            )
