"""Champion vs challenger: the pure rules, the document and the tags (no AWS, no Airflow)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from airflow_sm_provider.champion import (
    CHAMPION_DATE_TAG,
    CHAMPION_TAG,
    ChampionRecord,
    Contender,
    DecisionContext,
    Outcome,
    best_completed,
    champion_document,
    champion_since,
    contender,
    decide,
    objective_value,
    read_document,
    tag_changes,
)
from airflow_sm_provider.reporting.model import Objective
from airflow_sm_provider.s3_keys import champion_key
from airflow_sm_provider.tracking.base import RunRef, TrackedRun

LOSS = Objective("validation:loss", "Minimize")
ACCURACY = Objective("validation:accuracy", "Maximize")
TODAY = date(2026, 12, 1)


def run(record: str, value: float | None = 0.5, status: str | None = "Completed", **kw) -> Contender:
    return Contender(
        record=record,
        run_name=record,
        arn=f"arn:tc/{record}",
        job=f"job-{record}",
        status=status,
        value=value,
        **kw,
    )


def test_value_is_the_final_metric_when_finite() -> None:
    assert objective_value({"final.validation:loss": 0.25}, "validation:loss") == 0.25
    assert objective_value({"final.validation:loss": 3}, "validation:loss") == 3.0
    for params in ({}, {"final.validation:loss": float("nan")}, {"final.validation:loss": "0.2"}):
        assert objective_value(params, "validation:loss") is None
    assert objective_value({"final.ok": True}, "ok") is None


def test_a_tracked_run_becomes_a_contender_with_its_job_and_tag() -> None:
    tracked = TrackedRun(
        ref=RunRef("experiments", "exp", "c01-abc", "exp-c01-abc", "arn:tc/exp-c01-abc"),
        status="Completed",
        message="",
        parameters={"job.name": "digits-c01-abc", "final.validation:loss": 0.3, "learning-rate": 0.1},
        inputs={},
        outputs={},
        tags={CHAMPION_TAG: "true"},
        metrics=(),
    )
    found = contender(tracked, "validation:loss")
    assert found == Contender(
        "exp-c01-abc", "c01-abc", "arn:tc/exp-c01-abc", "digits-c01-abc", "Completed", 0.3, holds_tag=True
    )
    assert found.eligible
    assert not contender(tracked, "validation:accuracy").eligible  # no value of that metric


def test_best_completed_follows_the_direction_and_skips_failed_or_valueless_runs() -> None:
    runs = [
        run("a", 0.4),
        run("b", 0.2),
        run("c", 0.1, status="Failed"),
        run("d", None),
        run("e", 0.05, status="InProgress"),
    ]
    assert best_completed(runs, LOSS).record == "b"
    assert best_completed(runs, Objective("validation:loss", "Maximize")).record == "a"
    assert best_completed([run("z", 0.2), run("y", 0.2)], LOSS).record == "y"  # ties: by record name
    assert best_completed([run("c", status="Failed"), run("d", None)], LOSS) is None
    assert best_completed([], LOSS) is None


def test_no_champion_yet_the_challenger_takes_the_title() -> None:
    decision = decide(None, run("new", 0.3), LOSS)
    assert decision.outcome == Outcome.FIRST_CHAMPION
    assert decision.winner.record == "new" and decision.loser is None
    assert "no champion yet" in decision.reason


@pytest.mark.parametrize(
    ("objective", "champion", "challenger", "outcome"),
    [
        (LOSS, 0.30, 0.20, Outcome.CHALLENGER_WINS),
        (LOSS, 0.20, 0.30, Outcome.CHAMPION_STAYS),
        (LOSS, 0.20, 0.20, Outcome.CHAMPION_STAYS),  # a tie keeps the champion
        (ACCURACY, 0.90, 0.95, Outcome.CHALLENGER_WINS),
        (ACCURACY, 0.95, 0.90, Outcome.CHAMPION_STAYS),
    ],
)
def test_the_better_run_wins_in_the_objectives_direction(objective, champion, challenger, outcome) -> None:
    decision = decide(run("old", champion), run("new", challenger), objective)
    assert decision.outcome == outcome
    winner, loser = ("new", "old") if outcome == Outcome.CHALLENGER_WINS else ("old", "new")
    assert (decision.winner.record, decision.loser.record) == (winner, loser)
    assert objective.metric in decision.reason


def test_the_challenger_must_beat_the_champion_by_more_than_min_delta() -> None:
    assert decide(run("old", 0.30), run("new", 0.25), LOSS, min_delta=0.05).outcome == Outcome.CHAMPION_STAYS
    assert decide(run("old", 0.30), run("new", 0.24), LOSS, min_delta=0.05).outcome == Outcome.CHALLENGER_WINS
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="min_delta"):
            decide(None, run("new"), LOSS, min_delta=bad)


@pytest.mark.parametrize(
    "challenger",
    [run("new", 0.01, status="Failed"), run("new", None), run("new", 0.01, status="InProgress"), None],
)
def test_a_failed_challenger_never_wins(challenger) -> None:
    kept = decide(run("old", 0.9), challenger, LOSS)
    assert kept.outcome == Outcome.CHAMPION_STAYS and kept.winner.record == "old"
    assert "champion old stays" in kept.reason
    nobody = decide(None, challenger, LOSS)
    assert nobody.outcome == Outcome.NO_CHAMPION and nobody.winner is None
    assert tag_changes(nobody, [], "2026-12-01", TODAY) == []


def test_a_champion_without_a_value_of_the_objective_loses_to_a_completed_challenger() -> None:
    decision = decide(run("old", None), run("new", 0.4), LOSS)
    assert decision.outcome == Outcome.CHALLENGER_WINS and decision.loser.record == "old"


def test_the_document_names_the_winner_since_it_won_and_reads_back() -> None:
    when = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    context = DecisionContext("exp", LOSS, when, "retrain", "scheduled__x", "s3://b/p/report.html")
    first = decide(None, run("new", 0.3), LOSS)
    document = json.loads(json.dumps(champion_document(first, None, context)))  # JSON-able
    assert document["champion"]["record"] == "new" and document["champion"]["since"] == "2026-12-01"
    assert document["challenger"]["record"] == "new" and document["outcome"] == "first-champion"
    assert document["objective"] == {"metric": "validation:loss", "direction": "Minimize"}
    assert document["report"] == "s3://b/p/report.html" and document["previous_champion"] is None
    previous = read_document(document)
    assert previous == ChampionRecord("new", "2026-12-01")

    later = DecisionContext("exp", LOSS, datetime(2026, 12, 8, tzinfo=UTC), "retrain", "r2")
    stays = decide(run("new", 0.3), run("newer", 0.4), LOSS)
    kept = champion_document(stays, previous, later)
    assert kept["champion"]["since"] == "2026-12-01"  # the same champion keeps its date
    assert kept["challenger"]["record"] == "newer" and kept["previous_champion"] == "new"
    with pytest.raises(ValueError, match="winner"):
        champion_document(decide(None, None, LOSS), None, later)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "must be a JSON object"),
        ({"schema": 2, "champion": {}}, "schema must be 1"),
        ({"schema": 1}, "champion must be an object"),
        ({"schema": 1, "champion": {"record": "", "since": "2026-01-01"}}, r"champion\.record"),
        ({"schema": 1, "champion": {"record": "r", "since": "yesterday"}}, r"champion\.since must be an ISO"),
    ],
)
def test_a_document_of_another_shape_is_refused_naming_the_field(document, message) -> None:
    with pytest.raises(ValueError, match=f"s3://b/champion/exp.json: {message}"):
        read_document(document, "s3://b/champion/exp.json")
    assert read_document(None) is None


def test_tags_crown_the_winner_and_flip_the_loser_and_stale_holders() -> None:
    decision = decide(run("old", 0.3, holds_tag=True), run("new", 0.2), LOSS)
    holders = [run("old", 0.3, holds_tag=True), run("stale", 0.5, holds_tag=True), run("other", 0.1)]
    since = champion_since(decision, ChampionRecord("old", "2026-11-01"), TODAY)
    assert since == "2026-12-01"
    changes = {change.record: change.tags for change in tag_changes(decision, holders, since, TODAY)}
    assert changes == {
        "new": {CHAMPION_TAG: "true", CHAMPION_DATE_TAG: "2026-12-01"},
        "old": {CHAMPION_TAG: "false", CHAMPION_DATE_TAG: "2026-12-01"},
        "stale": {CHAMPION_TAG: "false", CHAMPION_DATE_TAG: "2026-12-01"},
    }


def test_a_staying_champion_keeps_its_date_and_the_challenger_is_marked_as_lost() -> None:
    decision = decide(run("old", 0.1, holds_tag=True), run("new", 0.2), LOSS)
    since = champion_since(decision, ChampionRecord("old", "2026-11-01"), TODAY)
    changes = {
        c.record: c.tags for c in tag_changes(decision, [run("old", 0.1, holds_tag=True)], since, TODAY)
    }
    assert changes == {
        "old": {CHAMPION_TAG: "true", CHAMPION_DATE_TAG: "2026-11-01"},
        "new": {CHAMPION_TAG: "false", CHAMPION_DATE_TAG: "2026-12-01"},
    }


def test_the_champion_key_is_one_encoded_segment_under_the_prefix() -> None:
    assert champion_key("digits-demo", "digits-sweep") == "digits-demo/champion/digits-sweep.json"
    assert champion_key("", "a.b") == "champion/a~2Eb.json"
    with pytest.raises(ValueError, match="prefix"):
        champion_key("a/../b", "exp")
