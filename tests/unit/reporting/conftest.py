"""A sweep of three runs (one good, one diverging into NaN, one failed) for the report tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from airflow_sm_provider.reporting.model import Objective, Report, RunRecord, build_report

NOW = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)
SeriesFactory = Callable[[dict[tuple[str, str], list[float]]], pd.DataFrame]


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def make_series() -> SeriesFactory:
    """Tidy series from ``{(run, metric): values}``, one value per step from 0."""

    def build(curves: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
        frames = []
        for (run, metric), values in curves.items():
            value = np.array(values, dtype=float)
            frames.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "job": f"{run}-job",
                        "metric": metric,
                        "step": np.arange(len(value)),
                        "value": value,
                        "timestamp": pd.date_range("2026-11-30T20:00Z", periods=len(value), freq="10s"),
                        "source": "logs",
                        "finite": np.isfinite(value),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    return build


@pytest.fixture
def sweep(make_series: SeriesFactory) -> tuple[list[RunRecord], pd.DataFrame]:
    good = [2.0 / (1 + i / 3) for i in range(20)]
    diverging = [1.0, 0.8, 0.6, 0.5, 1.2, 3.0, 9.0, math.nan, math.nan]
    series = make_series({("good", "validation:loss"): good, ("diverging", "validation:loss"): diverging})
    runs = [
        RunRecord(
            name="good", status="Completed", hyperparameters={"eta": "0.1"}, instance_type="ml.m5.large"
        ),
        RunRecord(name="diverging", status="Completed", hyperparameters={"eta": "0.9"}),
        RunRecord(name="failed", status="Failed", failure_reason="AlgorithmError: out of memory"),
    ]
    return runs, series


@pytest.fixture
def report(sweep: tuple[list[RunRecord], pd.DataFrame]) -> Report:
    runs, series = sweep
    return build_report(runs, series, Objective("validation:loss"), now=NOW)
