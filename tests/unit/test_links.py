from __future__ import annotations

import pytest

from airflow_sm_provider.links import (
    ProcessingJobLink,
    TrainingJobLink,
    arn_location,
    console_url,
)


@pytest.mark.parametrize(
    ("partition", "region", "host"),
    [
        ("aws", "us-east-1", "console.aws.amazon.com"),
        ("aws-cn", "cn-north-1", "console.amazonaws.cn"),
        ("aws-us-gov", "us-gov-west-1", "console.amazonaws-us-gov.com"),
        ("aws-eusc", "eusc-de-east-1", "console.amazonaws-eusc.eu"),
        ("aws-iso", "us-iso-east-1", "console.c2s.ic.gov"),
        ("aws-iso-b", "us-isob-east-1", "console.sc2s.sgov.gov"),
    ],
)
def test_console_url_per_partition(partition, region, host):
    assert console_url("training", partition=partition, region_name=region, job_name="j-1") == (
        f"https://{host}/sagemaker/home?region={region}#/jobs/j-1"
    )
    assert console_url("processing", partition=partition, region_name=region, job_name="p-1") == (
        f"https://{host}/sagemaker/home?region={region}#/processing-jobs/p-1"
    )


@pytest.mark.parametrize("partition", ["aws-iso-e", "aws-iso-f", "unknown"])
def test_no_link_where_the_console_is_not_known(partition):
    assert console_url("training", partition=partition, region_name="r", job_name="j") == ""


def test_arn_location():
    arn = "arn:aws-cn:sagemaker:cn-northwest-1:123456789012:training-job/abc"
    assert arn_location(arn) == ("aws-cn", "cn-northwest-1")
    with pytest.raises(ValueError, match="not an ARN"):
        arn_location("training-job/abc")


class _TaskInstance:
    """Records xcom_push; the real one needs a running task (covered by the operator's dag.test)."""

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


class _Operator:
    do_xcom_push = True


def test_persist_stores_partition_region_and_name():
    ti = _TaskInstance()
    arn = "arn:aws-us-gov:sagemaker:us-gov-west-1:123456789012:processing-job/prep-abc"
    ProcessingJobLink.persist({"ti": ti}, _Operator(), job_name="Prep-abc", job_arn=arn)
    assert ti.pushed == {
        ProcessingJobLink.key: {
            "partition": "aws-us-gov",
            "region_name": "us-gov-west-1",
            "job_name": "Prep-abc",
        }
    }


def test_persist_respects_do_xcom_push():
    ti, operator = _TaskInstance(), _Operator()
    operator.do_xcom_push = False
    TrainingJobLink.persist(
        {"ti": ti}, operator, job_name="j", job_arn="arn:aws:sagemaker:r:1:training-job/j"
    )
    assert ti.pushed == {}


def test_links_have_distinct_names_and_keys():
    assert TrainingJobLink().name != ProcessingJobLink().name
    assert TrainingJobLink.key != ProcessingJobLink.key


def test_malformed_arn_leaves_no_link_and_does_not_fail(caplog):
    """``persist`` runs after the job was created: a link must never fail the task."""
    ti = _TaskInstance()
    TrainingJobLink.persist({"ti": ti}, _Operator(), job_name="j", job_arn="training-job/j")
    assert ti.pushed == {}
    assert "No console link for SageMaker job j" in caplog.text


def test_console_paths_come_from_the_job_kind_table(monkeypatch):
    from dataclasses import replace

    from airflow_sm_provider import job_kinds

    kinds = dict(job_kinds.KINDS)
    kinds[job_kinds.JobKind.TRAINING] = replace(kinds[job_kinds.JobKind.TRAINING], console_path="moved")
    monkeypatch.setattr("airflow_sm_provider.links.KINDS", kinds)
    assert console_url("training", partition="aws", region_name="r", job_name="j").endswith("#/moved/j")


def test_get_link_reads_xcom_through_compat(monkeypatch):
    from airflow_sm_provider import _compat

    class XCom:
        @staticmethod
        def get_value(*, key, ti_key):
            assert (key, ti_key) == (TrainingJobLink.key, "ti-key")
            return {"partition": "aws", "region_name": "eu-west-1", "job_name": "j"}

    monkeypatch.setattr(_compat, "XCom", XCom, raising=False)
    assert TrainingJobLink().get_link(_Operator(), ti_key="ti-key") == (
        "https://console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/j"
    )


def test_studio_url_only_for_a_domain_id_in_the_aws_partition():
    from airflow_sm_provider.links import studio_url

    assert studio_url(partition="aws", region_name="eu-west-1", domain_id="d-abc123") == (
        "https://d-abc123.studio.eu-west-1.sagemaker.aws/"
    )
    assert studio_url(partition="aws-cn", region_name="cn-north-1", domain_id="d-abc123") == ""
    for bad in ("", "abc", "d-ABC", "d-x.evil.example/#", "d-"):
        assert studio_url(partition="aws", region_name="eu-west-1", domain_id=bad) == ""


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("d-abc123", "https://d-abc123.studio.eu-west-1.sagemaker.aws/"),
        ("", "https://console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/j"),
        ("not-a-domain", "https://console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/j"),
    ],
)
def test_run_link_opens_studio_when_configured_else_the_job(monkeypatch, domain, expected):
    from airflow_sm_provider import _compat
    from airflow_sm_provider.links import TrackedRunLink

    class XCom:
        @staticmethod
        def get_value(*, key, ti_key):
            assert key == TrackedRunLink.key
            return {"partition": "aws", "region_name": "eu-west-1", "job_name": "j"}

    monkeypatch.setattr(_compat, "XCom", XCom, raising=False)
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__STUDIO_DOMAIN_ID", domain)
    assert TrackedRunLink().get_link(_Operator(), ti_key="k") == expected
