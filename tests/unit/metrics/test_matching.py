"""Matching MetricDefinitions on log lines: SageMaker's rules, validation, speed, time bounds."""

from __future__ import annotations

import time

import pytest

from airflow_sm_provider.metrics.matching import (
    MAX_DEFINITIONS,
    LineMatcher,
    MetricDefinitionError,
    match_lines,
    validate_definitions,
)

LOSS = {"Name": "train:loss", "Regex": r"loss=(\S+)"}
ACC = {"Name": "validation:accuracy", "Regex": r"val_acc=(\S+)"}


def _points(result) -> list[tuple[str, float, int, int]]:
    m = result.matches
    return sorted(zip(m.metric, m.value, m.step, m.line, strict=True), key=lambda p: (p[3], p[0]))


def test_first_group_as_float_with_step_from_the_same_line() -> None:
    lines = ["epoch=1 loss=0.5", "noise", "epoch: 2 loss=1e-3 val_acc=0.75", "epoch 3 val_acc=-inf"]
    result = match_lines(lines, [LOSS, ACC])
    assert _points(result) == [
        ("train:loss", 0.5, 1, 0),
        ("train:loss", 0.001, 2, 2),
        ("validation:accuracy", 0.75, 2, 2),
        ("validation:accuracy", float("-inf"), 3, 3),
    ]


def test_non_finite_values_are_kept() -> None:
    result = match_lines(["loss=nan", "loss=inf", "loss=-inf", "loss=NaN"], [LOSS], step_regex=None)
    values = result.matches.value
    assert len(values) == 4
    assert values[0] != values[0] and values[3] != values[3]  # NaN, twice
    assert values[1:3] == [float("inf"), float("-inf")]


def test_without_a_step_the_metric_order_is_the_step() -> None:
    lines = ["loss=1", "val_acc=0.1", "loss=2", "junk", "loss=3"]
    result = match_lines(lines, [LOSS, ACC])
    assert [(p[0], p[2]) for p in _points(result)] == [
        ("train:loss", 0),
        ("validation:accuracy", 0),
        ("train:loss", 1),
        ("train:loss", 2),
    ]


def test_unparsable_values_are_counted_not_silently_lost() -> None:
    result = match_lines(["loss=abc", "loss=2"], [LOSS], step_regex=None)
    assert result.matches.value == [2.0]
    assert result.unparsed == {"train:loss": 1}


def test_first_match_per_line_only_as_sagemaker_does() -> None:
    result = match_lines(["loss=1 loss=2", "loss=3"], [LOSS], step_regex=None)
    assert result.matches.value == [1.0, 3.0]
    assert result.matches.line == [0, 1]


def test_a_match_never_spans_lines() -> None:
    # \s matches "\n": over the joined chunk this would pair "loss:" with the next line's number.
    spanning = {"Name": "loss", "Regex": r"loss:\s*(\d+)"}
    result = match_lines(["loss:", "12 other", "loss: 7"], [spanning], step_regex=None)
    assert result.matches.value == [7.0]
    assert result.matches.line == [2]


def test_anchors_work_per_line() -> None:
    anchored = {"Name": "loss", "Regex": r"^loss=(\S+)$"}
    result = match_lines(["loss=1", "x loss=2", "loss=3"], [anchored], step_regex=None)
    assert result.matches.value == [1.0, 3.0]


def test_streaming_and_batch_agree() -> None:
    lines = [f"epoch={i // 3} loss={i}" if i % 3 else f"val_acc={i / 10}" for i in range(100)]
    batch = match_lines(lines, [LOSS, ACC], chunk_lines=7)
    matcher = LineMatcher([LOSS, ACC])
    streamed = [matcher.feed([line]) for line in lines]
    assert _points(batch) == sorted(
        (
            (m, v, s, n)
            for part in streamed
            for m, v, s, n in zip(part.metric, part.value, part.step, part.line, strict=True)
        ),
        key=lambda p: (p[3], p[0]),
    )


def test_validation_names_field_and_rule() -> None:
    bad = [
        {"Name": "", "Regex": r"(\d)"},
        {"Name": "ok", "Regex": r"no group"},
        {"Name": "bad", "Regex": r"(unclosed"},
        {"Name": "long", "Regex": "(x)" + "y" * 500},
        {"Name": "ok", "Regex": r"(\d)"},
    ]
    with pytest.raises(MetricDefinitionError) as err:
        validate_definitions(bad)
    text = str(err.value)
    assert "MetricDefinitions[0].Name: must be a string of 1-255 characters" in text
    assert "MetricDefinitions[1].Regex: needs a capture group" in text
    assert "MetricDefinitions[2].Regex: not a valid regular expression" in text
    assert "MetricDefinitions[3].Regex: length must be 1-500 characters" in text
    assert "MetricDefinitions[4].Name: 'ok' is defined twice" in text


def test_at_most_40_definitions() -> None:
    many = [{"Name": f"m{i}", "Regex": r"(\d)"} for i in range(MAX_DEFINITIONS + 1)]
    with pytest.raises(MetricDefinitionError, match="at most 40 definitions"):
        validate_definitions(many)


def test_bad_step_regex_is_refused() -> None:
    with pytest.raises(MetricDefinitionError, match="step_regex: needs a capture group"):
        LineMatcher([LOSS], step_regex="epoch")


def test_catastrophic_regex_is_bounded_disabled_once_and_others_continue() -> None:
    evil = {"Name": "evil", "Regex": r"(a|aa)+$"}
    # Unbounded, this line takes far longer than the test's timeout (exponential in its length).
    lines = ["loss=1", "a" * 60 + "b", "loss=2"] + [f"loss={i}" for i in range(3, 50)]
    matcher = LineMatcher([evil, LOSS], step_regex=None, timeout=0.2)
    started = time.monotonic()
    first = matcher.feed(lines)
    second = matcher.feed(["a" * 60 + "b", "loss=99"])
    elapsed = time.monotonic() - started
    assert elapsed < 5  # one timeout of 0.2 s, however loaded the machine
    assert [d.name for d in matcher.take_disabled()] == ["evil"]
    assert matcher.take_disabled() == []  # reported once
    assert "evil" in matcher.disabled
    assert first.value == [float(i) for i in range(1, 50)]
    assert second.value == [99.0]


def test_catastrophic_step_regex_is_bounded_too() -> None:
    matcher = LineMatcher([LOSS], step_regex=r"(a|aa)+$", timeout=0.2)
    found = matcher.feed(["loss=5 " + "a" * 60 + "b"])
    assert found.value == [5.0] and found.step == [0]
    assert [d.name for d in matcher.take_disabled()] == ["step_regex"]


def test_inline_flags_including_verbose_comments() -> None:
    lines = ["LOSS=1", "loss=2 # x"]
    assert match_lines(lines, [{"Name": "l", "Regex": r"(?i)loss=(\S+)"}], step_regex=None).matches.value == [
        1.0,
        2.0,
    ]
    verbose = {"Name": "l", "Regex": r"(?x) loss = (\d+)  # the value"}
    assert match_lines(lines, [verbose], step_regex=None).matches.value == [2.0]


def test_a_step_that_is_no_integer_falls_back_to_order() -> None:
    result = match_lines(["epoch=1 loss=1", "epoch=x1 loss=2"], [LOSS], step_regex=r"epoch=(\S+)")
    assert result.matches.step == [1, 1]  # the second line's order in the stream is 1
