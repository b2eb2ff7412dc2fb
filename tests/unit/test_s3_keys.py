"""Key-safe names and the S3 key layout of plots and reports."""

from __future__ import annotations

import pytest

from airflow_sm_provider.s3_keys import (
    decode_segment,
    encode_segment,
    job_metric_key,
    join_s3_uri,
    overlay_key,
    parse_s3_uri,
    report_prefix,
)

RUN_ID = "manual__2026-01-02T03:04:05.123456+00:00"


@pytest.mark.parametrize(
    "text",
    [RUN_ID, "validation:loss", "..", ".hidden", "a/b/../c", "~7E", "loss %", "näive 学习", "a" * 200],
)
def test_encoding_is_key_safe_and_reversible(text: str) -> None:
    encoded = encode_segment(text)
    assert "/" not in encoded
    assert ".." not in encoded
    assert not encoded.startswith(".")
    assert decode_segment(encoded) == text


def test_encoding_keeps_readable_names_and_is_injective() -> None:
    assert encode_segment("train_loss-1") == "train_loss-1"
    assert encode_segment("validation:loss") == "validation~3Aloss"
    names = ["a:b", "a~3Ab", "a.b", "a~2Eb", "a/b", "a~2Fb"]
    assert len({encode_segment(n) for n in names}) == len(names)


@pytest.mark.parametrize("bad", ["", "a.b", "~41", "~zz", "a~3", "~FF"])
def test_decode_refuses_what_encode_never_makes(bad: str) -> None:
    with pytest.raises(ValueError, match="segment"):
        decode_segment(bad)


def test_key_layout() -> None:
    assert job_metric_key("/exp/", "job-1", "validation:loss") == "exp/job-1/metrics/validation~3Aloss.png"
    assert (
        overlay_key("exp", "sweep", "manual__2026-01-02T03:04:05+00:00", "loss")
        == "exp/plots/sweep/manual__2026-01-02T03~3A04~3A05~2B00~3A00/loss.png"
    )
    assert report_prefix("", "sweep", "r1") == "reports/sweep/r1/"


@pytest.mark.parametrize("prefix", ["a/../b", "..", "a//b", "./a"])
def test_prefix_traversal_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        job_metric_key(prefix, "job-1", "loss")


def test_job_name_is_checked() -> None:
    with pytest.raises(ValueError, match="job"):
        job_metric_key("p", "../etc", "loss")


def test_key_length_is_bounded() -> None:
    with pytest.raises(ValueError, match="1024"):
        overlay_key("p", "d", "r", ":" * 400)


def test_s3_uri_parse_and_join() -> None:
    assert parse_s3_uri("s3://my-bucket/a/b.png") == ("my-bucket", "a/b.png")
    assert join_s3_uri("my-bucket", "a/", "/b/", "c.png") == "s3://my-bucket/a/b/c.png"
    assert join_s3_uri("my-bucket", report_prefix("p", "d", "r")) == "s3://my-bucket/p/reports/d/r/"


@pytest.mark.parametrize(
    "uri", ["http://b/k", "s3://b/k", "s3://Bad_Bucket/k", "s3://my-bucket/a/../b", "s3://my-bucket/./a"]
)
def test_s3_uri_parse_refuses_bad_uris(uri: str) -> None:
    with pytest.raises(ValueError, match="uri"):
        parse_s3_uri(uri)


def test_s3_uri_join_refuses_traversal() -> None:
    with pytest.raises(ValueError, match=r"'\.\.'"):
        join_s3_uri("my-bucket", "a", "../b")
