"""Champion and challenger: which run of an experiment a scheduled retrain keeps.

The scheduled retrain (template ``sagemaker_scheduled_retrain``) trains the experiment's best
configuration again, the *challenger*, and compares the new run with the experiment's
*champion*, the run named in ``{prefix}/champion/{experiment}.json``. :func:`decide` applies
these rules, in order:

1. A challenger that did not complete, or has no finite value of the objective, never wins:
   the champion stays; with no champion there is no winner and nothing is recorded.
2. No champion yet (the first retrain), or a champion without a value of the objective (the
   objective changed since it won): the challenger becomes the champion.
3. Otherwise the challenger wins only when it beats the champion by more than ``min_delta``
   in the objective's direction; a tie keeps the champion, so noise does not flip the title.

A run's value is its final metric as the tracker records it when the job ends
(``final.<metric>``, from DescribeTrainingJob's FinalMetricDataList), which is also what the
comparison report ranks by with ``rank_by="final"``. :func:`best_completed` picks the
configuration to retrain by the same value.

The champion document (:func:`champion_document`, read back with :func:`read_document`) and
the tags on the runs (:func:`tag_changes`: the winner ``airflow-sm:champion=true`` with the
date it won, every other holder and the loser flipped to ``false`` with the date it lost) are
built here; the S3 and AddTags calls are in ``hooks/champion.py``.

Pure: no AWS or Airflow imports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_sm_provider.naming import TAG_PREFIX
from airflow_sm_provider.tracking.records import FINAL_METRIC_PREFIX, RunStatus

if TYPE_CHECKING:
    from airflow_sm_provider.reporting.model import Objective
    from airflow_sm_provider.tracking.base import TrackedRun

SCHEMA_VERSION = 1
CHAMPION_TAG = f"{TAG_PREFIX}champion"
#: The date (ISO) the run won the title (with ``true``) or lost it (with ``false``).
CHAMPION_DATE_TAG = f"{TAG_PREFIX}champion-date"


class Outcome(StrEnum):
    """How a retrain ended for the title."""

    FIRST_CHAMPION = "first-champion"  # no champion before: the challenger takes the title
    CHALLENGER_WINS = "challenger-wins"
    CHAMPION_STAYS = "champion-stays"
    NO_CHAMPION = "no-champion"  # the challenger failed and nobody held the title


@dataclass(frozen=True)
class Contender:
    """A run as the decision sees it: who it is, how it ended, its objective value."""

    record: str
    run_name: str
    arn: str
    job: str | None
    status: str | None
    value: float | None
    #: Whether the run carries ``airflow-sm:champion=true`` now.
    holds_tag: bool = False

    @property
    def eligible(self) -> bool:
        """Completed with a finite objective value: only such a run can win."""
        return self.status == RunStatus.COMPLETED and self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def objective_value(parameters: Mapping[str, Any], metric: str) -> float | None:
    """The run's final value of ``metric`` (``final.<metric>``); None when missing or not finite."""
    value = parameters.get(f"{FINAL_METRIC_PREFIX}{metric}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def contender(run: TrackedRun, metric: str) -> Contender:
    """A tracked run (as the tracker's lookups return it) as a :class:`Contender` on ``metric``."""
    job = run.parameters.get("job.name")
    return Contender(
        record=run.ref.record,
        run_name=run.ref.run_name,
        arn=run.ref.arn,
        job=str(job) if job else None,
        status=run.status,
        value=objective_value(run.parameters, metric),
        holds_tag=run.tags.get(CHAMPION_TAG) == "true",
    )


def best_completed(contenders: Iterable[Contender], objective: Objective) -> Contender | None:
    """The eligible run with the best value (ties: the first record name); None when none is."""
    eligible = [c for c in contenders if c.eligible]
    if not eligible:
        return None
    return min(eligible, key=lambda c: (objective.key(c.value), c.record))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Decision:
    """Who holds the title after a retrain, who lost, and why (one line for logs and the JSON)."""

    outcome: Outcome
    winner: Contender | None
    loser: Contender | None
    reason: str


def _describe(run: Contender, metric: str) -> str:
    value = "no value" if run.value is None else f"{metric}={run.value:.6g}"
    return f"{run.record} ({run.status or 'not started'}, {value})"


def decide(
    champion: Contender | None,
    challenger: Contender | None,
    objective: Objective,
    min_delta: float = 0.0,
) -> Decision:
    """Apply the rules of the module docstring; ``challenger`` None: its job never started."""
    if not math.isfinite(min_delta) or min_delta < 0:
        raise ValueError(f"min_delta: must be a finite number >= 0, got {min_delta!r}")
    metric = objective.metric
    if challenger is None or not challenger.eligible:
        why = "did not start" if challenger is None else f"is not eligible: {_describe(challenger, metric)}"
        if champion is None:
            return Decision(Outcome.NO_CHAMPION, None, challenger, f"the challenger {why}; no champion yet")
        return Decision(
            Outcome.CHAMPION_STAYS,
            champion,
            challenger,
            f"the challenger {why}; champion {champion.record} stays",
        )
    if champion is None:
        return Decision(
            Outcome.FIRST_CHAMPION,
            challenger,
            None,
            f"no champion yet: the challenger {_describe(challenger, metric)} becomes champion",
        )
    if champion.value is None:
        return Decision(
            Outcome.CHALLENGER_WINS,
            challenger,
            champion,
            f"champion {champion.record} has no value of {metric}: the challenger "
            f"{_describe(challenger, metric)} takes over",
        )
    gain = objective.key(champion.value) - objective.key(challenger.value)  # type: ignore[arg-type]
    verdict = (
        f"challenger {_describe(challenger, metric)} vs champion {_describe(champion, metric)} "
        f"({objective.direction}, min_delta {min_delta:g})"
    )
    if gain > min_delta:
        return Decision(Outcome.CHALLENGER_WINS, challenger, champion, f"{verdict}: the challenger wins")
    return Decision(Outcome.CHAMPION_STAYS, champion, challenger, f"{verdict}: the champion stays")


@dataclass(frozen=True)
class ChampionRecord:
    """What a champion document says about the title holder."""

    record: str
    since: str  # ISO date the run won the title


def read_document(
    document: Mapping[str, Any] | None, where: str = "champion document"
) -> ChampionRecord | None:
    """The champion named by a document :func:`champion_document` wrote; None for no document.

    A document of another shape raises ``ValueError`` naming ``where`` and the field, so a
    hand-edited file is refused before anything is trained.
    """
    if document is None:
        return None
    if not isinstance(document, Mapping):
        raise ValueError(f"{where}: must be a JSON object")
    if document.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{where}: schema must be {SCHEMA_VERSION}, got {document.get('schema')!r}")
    champion = document.get("champion")
    if not isinstance(champion, Mapping):
        raise ValueError(f"{where}: champion must be an object naming the champion run")
    for key in ("record", "since"):
        if not isinstance(champion.get(key), str) or not champion[key]:
            raise ValueError(f"{where}: champion.{key} must be a non-empty string")
    try:
        date.fromisoformat(champion["since"])
    except ValueError:
        raise ValueError(f"{where}: champion.since must be an ISO date, got {champion['since']!r}") from None
    return ChampionRecord(record=champion["record"], since=champion["since"])


@dataclass(frozen=True)
class DecisionContext:
    """Where and when a decision was made, for the document."""

    experiment: str
    objective: Objective
    decided_at: datetime
    dag_id: str
    run_id: str
    report: str | None = None


def champion_since(decision: Decision, previous: ChampionRecord | None, today: date) -> str:
    """The date the winner won: kept while the same champion stays, else ``today``."""
    if decision.winner is None:
        raise ValueError("no winner: nothing to date")
    if previous is not None and previous.record == decision.winner.record:
        return previous.since
    return today.isoformat()


def champion_document(
    decision: Decision, previous: ChampionRecord | None, context: DecisionContext
) -> dict[str, Any]:
    """The JSON of ``{prefix}/champion/{experiment}.json`` after ``decision`` (which has a winner)."""
    if decision.winner is None:
        raise ValueError("no winner: a champion document needs one")
    challenger = decision.loser if decision.outcome == Outcome.CHAMPION_STAYS else decision.winner
    return {
        "schema": SCHEMA_VERSION,
        "experiment": context.experiment,
        "objective": {"metric": context.objective.metric, "direction": context.objective.direction},
        "champion": {
            **decision.winner.to_dict(),
            "since": champion_since(decision, previous, context.decided_at.date()),
        },
        "challenger": challenger.to_dict() if challenger else None,
        "previous_champion": previous.record if previous else None,
        "outcome": decision.outcome.value,
        "reason": decision.reason,
        "decided_at": context.decided_at.isoformat(),
        "dag_id": context.dag_id,
        "run_id": context.run_id,
        "report": context.report,
    }


@dataclass(frozen=True)
class TagChange:
    """Tags to put on one run (AddTags replaces the value of a key it already has)."""

    arn: str
    record: str
    tags: dict[str, str]


def tag_changes(decision: Decision, holders: Iterable[Contender], since: str, today: date) -> list[TagChange]:
    """The winner tagged champion since ``since``; the loser and every other holder flipped off.

    ``holders``: runs that carry the champion tag now (a stale one too, e.g. when the document
    was deleted); the loser is flipped even when it never held the tag, so every run a retrain
    compared says how it ended.
    """
    if decision.winner is None:
        return []
    winner = decision.winner
    changes = [TagChange(winner.arn, winner.record, {CHAMPION_TAG: "true", CHAMPION_DATE_TAG: since})]
    losers = {c.record: c for c in holders if c.holds_tag}
    if decision.loser is not None:
        losers[decision.loser.record] = decision.loser
    losers.pop(winner.record, None)
    for record in sorted(losers):
        loser = losers[record]
        if loser.arn:
            changes.append(
                TagChange(loser.arn, record, {CHAMPION_TAG: "false", CHAMPION_DATE_TAG: today.isoformat()})
            )
    return changes
