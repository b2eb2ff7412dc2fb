"""Health rules: each fires where it should, at the right step, and stays quiet otherwise."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from airflow_sm_provider.metrics.health import (
    Divergence,
    HealthConfig,
    LossNotDecreasing,
    Overfit,
    Overtraining,
    Stalled,
    TooFewSteps,
    evaluate_health,
)

START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def series(**curves: list[float]) -> pd.DataFrame:
    """A tidy series from ``run__metric=[values]``: ``__`` separates run and metric, ``_`` means ``:``."""
    frames = []
    for key, values in curves.items():
        run, metric = key.split("__")
        n = len(values)
        value = np.array(values, dtype=float)
        frames.append(
            pd.DataFrame(
                {
                    "run": run,
                    "job": f"{run}-job",
                    "metric": metric.replace("_", ":"),
                    "step": np.arange(n),
                    "value": value,
                    "timestamp": pd.date_range(START, periods=n, freq="10s"),
                    "source": "logs",
                    "finite": np.isfinite(value),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def fired(frame: pd.DataFrame, rule: str, **kwargs: object) -> list[tuple[str, str | None, int | None]]:
    return [(f.run, f.metric, f.step) for f in evaluate_health(frame, **kwargs) if f.rule == rule]


DECREASING = [2.0 * 0.8**i for i in range(30)]


def test_non_finite_fires_at_the_first_nan_or_inf_and_counts_them() -> None:
    frame = series(a__train_loss=[1.0, 0.9, math.nan, math.inf, 0.5], b__train_loss=[1.0, 0.9, 0.8])
    flags = [f for f in evaluate_health(frame) if f.rule == "non_finite"]
    assert [(f.run, f.step) for f in flags] == [("a", 2)]
    assert "nan at step 2 (2 non-finite values)" in flags[0].reason


def test_loss_not_decreasing_over_num_steps() -> None:
    flat = [1.0] * 12
    frame = series(flat__train_loss=flat, good__train_loss=DECREASING)
    assert fired(frame, "loss_not_decreasing") == [("flat", "train:loss", 10)]


def test_loss_not_decreasing_with_diff_percent_wants_that_much() -> None:
    slow = [1.0 - 0.001 * i for i in range(12)]  # 1 % over 10 steps
    config = HealthConfig(loss_not_decreasing=LossNotDecreasing(num_steps=10, diff_percent=5))
    assert fired(series(slow__train_loss=slow), "loss_not_decreasing", config=config) == [
        ("slow", "train:loss", 10)
    ]
    assert fired(series(slow__train_loss=slow), "loss_not_decreasing") == []


def test_overfit_fires_when_validation_exceeds_train_by_the_ratio() -> None:
    train = DECREASING[:12]
    val = [t * (1.02 if i < 5 else 1.2) for i, t in enumerate(train)]
    frame = series(a__train_loss=train, a__validation_loss=val)
    assert fired(frame, "overfit") == [("a", "validation:loss", 5)]
    patient = HealthConfig(overfit=Overfit(patience=3))
    assert fired(frame, "overfit", config=patient) == [("a", "validation:loss", 7)]
    late = HealthConfig(overfit=Overfit(start_step=8))
    assert fired(frame, "overfit", config=late) == [("a", "validation:loss", 8)]
    close = series(a__train_loss=train, a__validation_loss=[t * 1.05 for t in train])
    assert fired(close, "overfit") == []


def test_overtraining_fires_after_patience_without_improvement() -> None:
    plateau = [5.0, 4.0, 3.0, 2.0, 1.0] + [1.0] * 8
    frame = series(a__train_loss=plateau, ok__train_loss=DECREASING)
    assert fired(frame, "overtraining") == [("a", "train:loss", 9)]
    val_plateau = series(a__validation_loss=plateau + [1.0] * 5)
    assert fired(val_plateau, "overtraining") == [("a", "validation:loss", 14)]
    lenient = HealthConfig(overtraining=Overtraining(patience_train=20))
    assert fired(frame, "overtraining", config=lenient) == []


def test_divergence_needs_consecutive_steps_above_twice_the_running_minimum() -> None:
    diverging = [1.0, 0.5, 0.4, 1.0, 0.9, 0.85, 0.3]
    spike = [1.0, 0.5, 0.4, 1.0, 0.9, 0.5, 0.3]
    with_nan = [1.0, 0.5, 0.4, 0.9, math.nan, math.inf]
    frame = series(d__train_loss=diverging, s__train_loss=spike, n__validation_loss=with_nan)
    assert fired(frame, "divergence") == [("d", "train:loss", 5), ("n", "validation:loss", 5)]
    assert fired(frame, "divergence", config=HealthConfig(divergence=Divergence(consecutive=2))) == [
        ("d", "train:loss", 4),
        ("s", "train:loss", 4),
        ("n", "validation:loss", 4),
    ]


def test_divergence_watches_every_loss_like_metric_but_not_accuracy() -> None:
    frame = series(a__aux_loss=[1.0, 0.4, 1.0, 1.0, 1.0], a__accuracy=[1.0, 0.4, 1.0, 1.0, 1.0])
    assert fired(frame, "divergence") == [("a", "aux:loss", 4)]


def test_too_few_steps_flags_short_and_empty_runs() -> None:
    frame = series(short__train_loss=[1.0, 0.9], ok__train_loss=[1.0, 0.9, 0.8])
    assert fired(frame, "too_few_steps", runs=["short", "ok", "empty"]) == [
        ("short", None, 1),
        ("empty", None, None),
    ]
    strict = HealthConfig(too_few_steps=TooFewSteps(min_steps=4))
    assert ("ok", None, 2) in fired(frame, "too_few_steps", config=strict)


def test_stalled_only_for_running_jobs_quiet_too_long() -> None:
    frame = series(
        a__train_loss=[1.0, 0.9, 0.8], b__train_loss=[1.0, 0.9, 0.8], c__train_loss=[1.0, 0.9, 0.8]
    )
    now = START + timedelta(minutes=31)
    statuses = {"a": "InProgress", "b": "Completed", "c": "InProgress"}
    flags = fired(frame, "stalled", statuses=statuses, now=now)
    assert flags == [("a", None, 2), ("c", None, 2)]
    assert fired(frame, "stalled", statuses=statuses, now=START + timedelta(minutes=10)) == []
    patient = HealthConfig(stalled=Stalled(threshold_seconds=3600))
    assert fired(frame, "stalled", statuses=statuses, now=now, config=patient) == []


def test_loss_names_are_configurable_and_rules_can_be_turned_off() -> None:
    train = DECREASING[:12]
    frame = series(a__loss=train, a__val_loss=[t * 1.5 for t in train])
    config = HealthConfig(train_loss="loss", validation_loss="val:loss")
    assert fired(frame, "overfit", config=config) == [("a", "val:loss", 0)]
    assert fired(frame, "overfit") == []
    off = HealthConfig(train_loss="loss", validation_loss="val:loss", overfit=None)
    assert fired(frame, "overfit", config=off) == []


def test_unsorted_input_gives_the_same_findings() -> None:
    frame = series(d__train_loss=[1.0, 0.5, 0.4, 1.0, 0.9, 0.85, 0.3], n__train_loss=[1.0, math.nan, 0.5])
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert evaluate_health(shuffled) == evaluate_health(frame)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LossNotDecreasing(num_steps=0), "LossNotDecreasing.num_steps must be > 0"),
        (lambda: Overfit(ratio_threshold=-1), "Overfit.ratio_threshold must be > 0"),
        (lambda: Divergence(factor=1.0), "Divergence.factor must be > 1"),
        (lambda: Overtraining(delta=-0.1), "Overtraining.delta must be >= 0"),
    ],
)
def test_bad_rule_parameters_name_the_field(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="missing column\\(s\\) value"):
        evaluate_health(pd.DataFrame({"run": [], "metric": [], "step": [], "timestamp": []}))
