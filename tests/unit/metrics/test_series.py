"""The tidy per-step series: every source, restarts, multi-host jobs, non-finite values, merge."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from airflow_sm_provider.metrics.series import (
    COLUMNS,
    empty_frame,
    from_log_events,
    from_metrics_json,
    from_points,
    merge,
)

DEFS = [
    {"Name": "train:loss", "Regex": r"train_loss=(\S+)"},
    {"Name": "validation:loss", "Regex": r"val_loss=(\S+)"},
]


def _event(stream: str, ms: int, message: str) -> dict:
    return {"logStreamName": stream, "timestamp": ms, "message": message}


def _points(frame: pd.DataFrame, metric: str) -> list[tuple[int, float]]:
    rows = frame[frame["metric"] == metric].sort_values("step")
    return list(zip(rows["step"], rows["value"], strict=True))


def _assert_schema(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == COLUMNS
    assert frame["step"].dtype == "int64"
    assert frame["value"].dtype == "float64"
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert frame["finite"].dtype == "bool"


def test_empty_frame_has_the_schema() -> None:
    frame = empty_frame()
    _assert_schema(frame)
    assert frame.empty


def test_job_without_metrics_gives_an_empty_frame() -> None:
    frame = from_log_events([_event("j/algo-1-1", 1, "hello")], DEFS, run="r", job="j")
    _assert_schema(frame)
    assert frame.empty
    assert from_log_events([], [], run="r", job="j").empty


def test_interleaved_train_and_validation_lines() -> None:
    events = []
    for epoch in range(1, 4):
        events.append(_event("j/algo-1-1", epoch * 1000, f"epoch={epoch} train_loss={1 / epoch}"))
        events.append(_event("j/algo-1-1", epoch * 1000 + 1, "loading batch"))
        events.append(_event("j/algo-1-1", epoch * 1000 + 2, f"epoch={epoch} val_loss={2 / epoch}"))
    frame = from_log_events(events, DEFS, run="run-a", job="job-a")
    _assert_schema(frame)
    assert _points(frame, "train:loss") == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert _points(frame, "validation:loss") == [(1, 2.0), (2, 1.0), (3, 2 / 3)]
    assert (
        set(frame["run"]) == {"run-a"} and set(frame["job"]) == {"job-a"} and set(frame["source"]) == {"logs"}
    )
    assert frame["timestamp"].iloc[0] == pd.Timestamp(1000, unit="ms", tz="UTC")


def test_non_finite_values_are_kept_and_flagged() -> None:
    messages = [
        "epoch=1 train_loss=0.5",
        "epoch=2 train_loss=nan",
        "epoch=3 train_loss=inf",
        "epoch=4 train_loss=-inf",
    ]
    events = [_event("j/algo-1-1", i, m) for i, m in enumerate(messages)]
    frame = from_log_events(events, DEFS, run="r", job="j")
    assert frame["finite"].tolist() == [True, False, False, False]
    values = frame["value"].tolist()
    assert math.isnan(values[1]) and values[2] == math.inf and values[3] == -math.inf


def test_spot_restart_keeps_the_latest_attempt_of_repeated_steps() -> None:
    first = [_event("j/algo-1-1000", 1000 + e, f"epoch={e} train_loss={10 + e}") for e in range(1, 6)]
    # Interrupted after epoch 5; resumed from the checkpoint of epoch 3 in a new stream.
    second = [_event("j/algo-1-9000", 9000 + e, f"epoch={e} train_loss={e}") for e in range(4, 8)]
    frame = from_log_events(first + second, DEFS, run="r", job="j")
    assert _points(frame, "train:loss") == [
        (1, 11.0),
        (2, 12.0),
        (3, 13.0),
        (4, 4.0),
        (5, 5.0),
        (6, 6.0),
        (7, 7.0),
    ]


def test_multi_host_job_takes_algo_1_and_fills_from_others() -> None:
    events = [
        *(_event("j/algo-2-1", e, f"epoch={e} train_loss={200 + e}") for e in range(1, 5)),
        *(_event("j/algo-1-1", e, f"epoch={e} train_loss={100 + e}") for e in range(1, 4)),
        _event("j/algo-2-1", 10, "epoch=1 val_loss=7"),  # only the second host validates
    ]
    frame = from_log_events(events, DEFS, run="r", job="j")
    assert _points(frame, "train:loss") == [(1, 101.0), (2, 102.0), (3, 103.0), (4, 204.0)]
    assert _points(frame, "validation:loss") == [(1, 7.0)]


def test_catastrophic_definition_is_skipped_and_others_kept(caplog: pytest.LogCaptureFixture) -> None:
    defs = [*DEFS, {"Name": "evil", "Regex": r"(a|aa)+$"}]
    events = [
        _event("j/algo-1-1", 1, "a" * 60 + "b"),
        _event("j/algo-1-1", 2, "epoch=1 train_loss=3"),
        _event("j/algo-2-1", 1, "a" * 60 + "b"),
    ]
    frame = from_log_events(events, defs, run="r", job="j", timeout=0.2)
    assert _points(frame, "train:loss") == [(1, 3.0)]
    assert caplog.text.count("'evil' disabled for job j (streams j/algo-1-1, j/algo-2-1)") == 1


def test_from_points() -> None:
    frame = from_points(
        [("run-a", "job-a", "loss", (0, 1, 2), (0.9, 0.5, 0.25)), ("run-a", "job-a", "acc", (5,), (0.8,))]
    )
    _assert_schema(frame)
    assert _points(frame, "loss") == [(0, 0.9), (1, 0.5), (2, 0.25)]
    assert _points(frame, "acc") == [(5, 0.8)]
    assert set(frame["source"]) == {"run"} and frame["timestamp"].isna().all()
    with pytest.raises(ValueError, match="loss of run-a: 2 steps for 1 values"):
        from_points([("run-a", "job-a", "loss", (0, 1), (0.9,))])


def test_from_metrics_json_both_forms() -> None:
    obj = {
        "metrics": {
            "loss": [0.9, None, "Infinity"],
            "acc": [{"step": 3, "value": 0.5, "timestamp": 1_700_000_000.5}, {"step": 4, "value": "NaN"}],
        },
        "version": 1,
    }
    frame = from_metrics_json(obj, "run-a", "job-a")
    _assert_schema(frame)
    loss = _points(frame, "loss")
    assert loss[0] == (0, 0.9) and math.isnan(loss[1][1]) and loss[2] == (2, math.inf)
    acc = frame[frame["metric"] == "acc"]
    assert acc["timestamp"].iloc[0] == pd.Timestamp(1_700_000_000_500, unit="ms", tz="UTC")
    assert acc["finite"].tolist() == [True, False]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({}, "needs a 'metrics' object"),
        ({"metrics": {"loss": 3}}, r"metrics.loss: must be a list"),
        ({"metrics": {"loss": [{"step": "1", "value": 1}]}}, r"metrics.loss\[0\].step: must be an integer"),
        ({"metrics": {"loss": ["high"]}}, r"metrics.loss\[0\]: 'high' is not a number"),
        ({"metrics": {"loss": [{"step": 1, "value": [1]}]}}, r"metrics.loss\[0\].value: must be a number"),
    ],
)
def test_from_metrics_json_names_the_bad_field(obj: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_metrics_json(obj, "r", "j")


def test_merge_precedence_logs_then_run_then_s3() -> None:
    logs = from_log_events([_event("j/algo-1-1", 1, "epoch=1 train_loss=nan")], DEFS, run="r", job="j")
    run = from_points([("r", "j", "train:loss", (1, 2), (5.0, 6.0))])
    s3 = from_metrics_json({"metrics": {"train:loss": [0.0, 10.0, 20.0, 30.0]}}, "r", "j")
    merged = merge([s3, run, logs, empty_frame()])
    _assert_schema(merged)
    rows = merged[merged["metric"] == "train:loss"]
    assert rows["source"].tolist() == ["s3", "logs", "run", "s3"]
    assert rows["step"].tolist() == [0, 1, 2, 3]
    assert math.isnan(rows["value"].iloc[1]) and not rows["finite"].iloc[1]
    assert merge([]).empty


def test_every_epoch_is_a_point() -> None:
    # CloudWatch keeps one point a minute; the logs hold one line per epoch, and so does the series.
    events = [_event("j/algo-1-1", 60_000 * e // 600, f"epoch={e} train_loss={1 / e}") for e in range(1, 601)]
    frame = from_log_events(events, DEFS, run="r", job="j")
    assert len(frame) == 600
    assert frame["step"].tolist() == list(range(1, 601))
