"""Job names and identity tags."""

from __future__ import annotations

import botocore.session
import pytest
import regex

from airflow_sm_provider.naming import (
    MAX_PREFIX_LENGTH,
    NAME_PATTERN,
    JobIdentity,
    config_hash,
    identity_tags,
    job_name,
    name_stem,
    sanitize_tag_value,
)

MODEL = botocore.session.get_session().get_service_model("sagemaker")
TAG_VALUE = regex.compile(MODEL.shape_for("TagValue").metadata["pattern"])
IDENTITY = JobIdentity("prod", "dag", "scheduled__2026-01-01T00:00:00+00:00", "train", 3)


def test_name_is_stable_readable_and_valid():
    name = job_name("digits-lr0", IDENTITY)
    assert name == job_name("digits-lr0", IDENTITY)
    assert name.startswith("digits-lr0-") and len(name) <= 63 and NAME_PATTERN.match(name)
    assert name_stem(name) == "digits-lr0"


@pytest.mark.parametrize(
    "other",
    [
        JobIdentity("staging", "dag", IDENTITY.run_id, "train", 3),
        JobIdentity("prod", "dag", "manual__x", "train", 3),
        JobIdentity("prod", "dag", IDENTITY.run_id, "train", 4),
        JobIdentity("prod", "dag2", IDENTITY.run_id, "train", 3),
    ],
)
def test_every_identity_part_changes_the_name(other):
    assert job_name("x", other) != job_name("x", IDENTITY)


def test_attempt_salt_gives_a_new_deterministic_name():
    assert job_name("x", IDENTITY, "2") != job_name("x", IDENTITY)
    assert job_name("x", IDENTITY, "2") == job_name("x", IDENTITY, "2")


@pytest.mark.parametrize("prefix", ["a" * 80, "bad_name.with spaces", "-lead", "", "x--y"])
def test_any_prefix_gives_a_valid_name(prefix):
    name = job_name(prefix, IDENTITY)
    assert len(name) <= 63 and NAME_PATTERN.match(name), name


def test_longest_whole_prefix_fits():
    assert job_name("a" * MAX_PREFIX_LENGTH, IDENTITY).startswith("a" * MAX_PREFIX_LENGTH + "-")
    assert len(job_name("a" * MAX_PREFIX_LENGTH, IDENTITY)) == 63


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


@pytest.mark.parametrize("value", ["run#1 (manual) ~é 東京", "x" * 300, "a\tb\nc", "ok:/=+-@._ 1"])
def test_tag_values_match_sagemakers_pattern(value):
    cleaned = sanitize_tag_value(value)
    assert TAG_VALUE.fullmatch(cleaned) and len(cleaned) <= 256


def test_identity_tags_are_valid_and_carry_the_digest():
    tags = identity_tags(JobIdentity("ns", "dag", "manual__2026-01-01T00:00:00+00:00#x" * 10, "t"), "abc")
    values = {t["Key"]: t["Value"] for t in tags}
    assert values["airflow-sm:config-hash"] == "abc"
    assert len(values["airflow-sm:identity"]) == 64
    assert all(TAG_VALUE.fullmatch(t["Value"]) and len(t["Value"]) <= 256 for t in tags)
    assert all(regex.fullmatch(MODEL.shape_for("TagKey").metadata["pattern"], t["Key"]) for t in tags)
