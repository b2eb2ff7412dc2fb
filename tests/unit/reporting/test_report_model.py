"""The report model: ranking, sections, cost, parameter effects, NaN-free JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime

import pandas as pd
import pytest

from airflow_sm_provider.reporting.model import Objective, Report, RunRecord, build_report, spearman
from airflow_sm_provider.reporting.render import report_json

SeriesFactory = Callable[[dict[tuple[str, str], list[float]]], pd.DataFrame]


def ranked(report: Report) -> list[tuple[int | None, str]]:
    return [(r.rank, r.name) for r in report.runs]


def test_good_ranks_first_diverging_is_flagged_failed_has_its_reason(report: Report) -> None:
    assert ranked(report) == [(1, "good"), (None, "diverging")]
    diverging = report.runs[1]
    assert math.isnan(diverging.objective_final)
    assert (diverging.objective_best, diverging.best_step) == (0.5, 3)
    rules = {(f.rule, f.step) for f in diverging.health}
    assert {("divergence", 6), ("non_finite", 7)} <= rules
    assert [(r.name, r.status, r.failure_reason) for r in report.failed] == [
        ("failed", "Failed", "AlgorithmError: out of memory")
    ]
    assert [f.rule for f in report.failed[0].health] == ["too_few_steps"]


def test_best_ranking_uses_the_best_value(
    report: Report, sweep: tuple[list[RunRecord], pd.DataFrame], now: datetime
) -> None:
    runs, series = sweep
    by_best = build_report(runs, series, Objective("validation:loss"), rank_by="best", now=now)
    assert ranked(by_best) == [(1, "good"), (2, "diverging")]
    assert by_best.runs[0].objective_best == pytest.approx(2.0 / (1 + 19 / 3))


def test_maximize_and_ties_go_to_the_earlier_best_step_then_the_name(
    make_series: SeriesFactory, now: datetime
) -> None:
    series = make_series(
        {
            ("late", "acc"): [0.1, 0.5, 0.9],
            ("early", "acc"): [0.9, 0.9, 0.9],
            ("b-same", "acc"): [0.9, 0.9, 0.9],
            ("low", "acc"): [0.2, 0.3, 0.4],
        }
    )
    runs = [RunRecord(name=n, status="Completed") for n in ("late", "early", "b-same", "low")]
    report = build_report(runs, series, Objective("acc", "Maximize"), now=now)
    assert ranked(report) == [(1, "b-same"), (2, "early"), (3, "late"), (4, "low")]


def test_final_value_prefers_the_jobs_final_metric_then_the_last_step(
    make_series: SeriesFactory, now: datetime
) -> None:
    series = make_series({("a", "loss"): [3.0, 2.0], ("b", "loss"): [3.0, 1.5]})
    runs = [
        RunRecord(name="a", status="Completed", final_metrics={"loss": 1.0, "acc": 0.7}),
        RunRecord(name="b", status="Completed"),
    ]
    report = build_report(runs, series, Objective("loss"), now=now)
    assert [(r.name, r.objective_final) for r in report.runs] == [("a", 1.0), ("b", 1.5)]
    assert report.runs[0].final_metrics == {"acc": 0.7}


def test_best_value_and_step_skip_non_finite_values(make_series: SeriesFactory, now: datetime) -> None:
    series = make_series({("a", "loss"): [math.nan, 3.0, 1.0, math.inf], ("b", "loss"): [5.0, 2.0, 4.0, 2.0]})
    runs = [RunRecord(name=n, status="Completed") for n in ("a", "b")]
    report = build_report(runs, series.iloc[::-1], Objective("loss"), rank_by="best", now=now)
    assert [(r.name, r.objective_best, r.best_step, r.rank) for r in report.runs] == [
        ("a", 1.0, 2, 1),
        ("b", 2.0, 1, 2),
    ]
    assert math.isinf(report.runs[0].objective_final)
    assert report.runs[1].objective_final == 2.0


def test_stopped_runs_join_the_failed_section_and_runs_without_series_are_unranked(now: datetime) -> None:
    runs = [
        RunRecord(name="stopped", status="Stopped", failure_reason="MaxRuntimeExceeded"),
        RunRecord(name="running", status="InProgress"),
        RunRecord(name="done", status="Completed", final_metrics={"loss": 0.3}),
    ]
    report = build_report(runs, None, Objective("loss"), now=now)
    assert ranked(report) == [(1, "done"), (None, "running")]
    assert [r.name for r in report.failed] == ["stopped"]
    assert {f.run for f in report.health if f.rule == "too_few_steps"} == {"stopped", "running", "done"}


def test_json_has_null_and_a_flag_never_nan(report: Report) -> None:
    text = report_json(report).decode()
    assert "NaN" not in text and "Infinity" not in text
    document = json.loads(text)
    assert document["schema_version"] == "1.0"
    assert document["objective"] == {"metric": "validation:loss", "direction": "Minimize"}
    diverging = document["runs"][1]
    assert diverging["objective_final"] is None
    assert diverging["non_finite"] == {"objective_final": "nan"}
    assert document["runs"][0]["non_finite"] == {}
    assert {"runs", "failed", "health", "parameter_effects", "generated_at"} <= set(document)


def test_spot_savings_and_cost_from_an_overridable_price_table(now: datetime) -> None:
    runs = [
        RunRecord(
            name="spot",
            status="Completed",
            instance_type="ml.g5.xlarge",
            instance_count=2,
            spot=True,
            training_seconds=3600,
            billable_seconds=900,
        ),
        RunRecord(name="exotic", status="Completed", instance_type="ml.x99.huge", billable_seconds=60),
    ]
    report = build_report(runs, None, Objective("loss"), prices={"ml.g5.xlarge": 2.0}, now=now)
    spot, exotic = sorted(report.runs, key=lambda r: r.name, reverse=True)
    assert spot.spot_savings == pytest.approx(0.75)
    assert spot.cost_usd == pytest.approx(2.0 * 2 * 900 / 3600)
    assert exotic.cost_usd is None
    assert exotic.cost_note == "no price for instance type 'ml.x99.huge'"
    assert report.notes == ["exotic: no price for instance type 'ml.x99.huge'"]


def test_parameter_effects_are_spearman_correlations(make_series: SeriesFactory, now: datetime) -> None:
    values = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
    series = make_series({(name, "loss"): [v] for name, v in values.items()})
    runs = [
        RunRecord(
            name=name,
            status="Completed",
            hyperparameters={"lr": str(i + 1), "depth": "6", "opt": "adam", "few": "1" if i < 2 else "x"},
        )
        for i, name in enumerate(values)
    ]
    report = build_report(runs, series, Objective("loss"), now=now)
    effects = {e.name: (e.points, e.spearman, e.note) for e in report.parameter_effects}
    assert effects == {
        "lr": (4, pytest.approx(-1.0), None),
        "depth": (4, None, "constant over the runs"),
        "few": (2, None, "fewer than 3 points"),
    }


def test_spearman_handles_ties() -> None:
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert spearman([1, 2], [2, 1]) is None


def test_from_dict_is_tolerant_of_missing_fields_and_reads_aws_shapes() -> None:
    assert RunRecord.from_dict({"name": "x"}) == RunRecord(name="x")
    record = RunRecord.from_dict(
        {
            "name": "y",
            "status": "Completed",
            "final_metrics": [{"MetricName": "loss", "Value": 0.25}, {"MetricName": "bad", "Value": "n/a"}],
            "tags": [{"Key": "team", "Value": "ml"}],
            "debug_rule_statuses": [
                {"RuleConfigurationName": "Overfit", "RuleEvaluationStatus": "NoIssuesFound"}
            ],
            "hyperparameters": {"lr": 0.1},
            "training_seconds": "120",
        }
    )
    assert record.final_metrics == {"loss": 0.25}
    assert record.tags == {"team": "ml"}
    assert record.debug_rule_statuses == {"Overfit": "NoIssuesFound"}
    assert record.hyperparameters == {"lr": "0.1"}
    assert record.training_seconds == 120.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: RunRecord.from_dict({"status": "Completed"}), "'name' is required"),
        (lambda: RunRecord.from_dict({"name": "a", "instance_count": "two"}), "instance_count must be"),
        (lambda: Objective("loss", "Lowest"), "objective.direction must be one of"),
        (lambda: Objective(""), "objective.metric must be a non-empty"),
        (lambda: build_report([], None, Objective("loss"), rank_by="last"), "rank_by must be one of"),
        (
            lambda: build_report([RunRecord(name="a")] * 2, None, Objective("loss")),
            "run names must be unique",
        ),
    ],
)
def test_bad_input_names_the_field(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
