"""The scheduled retrain's steps around its training job: what to retrain, and who won.

:func:`find_source` runs first, before anything is created: it looks the experiment's runs
up through the tracker, picks the best completed one by the objective (the configuration to
retrain: its job's hyperparameters, its data channels), reads the current champion from its
document, and fails with a clear message when the experiment has no completed run yet.
:func:`record_decision` runs last, once the challenger's job has ended (or failed to): it
reads both runs again, lets ``champion.decide`` pick the winner, and writes the champion
document and the tags (``hooks/champion.py``).

Both take plain arguments (the DAG's params, the training task's XCom) and return small
JSON-able dicts for XComs. ``ValueError`` means bad input or state a retry cannot fix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_sm_provider.champion import (
    ChampionRecord,
    Contender,
    DecisionContext,
    best_completed,
    champion_document,
    champion_since,
    contender,
    decide,
    read_document,
    tag_changes,
)
from airflow_sm_provider.template_jobs import CHANNELS

if TYPE_CHECKING:
    from airflow_sm_provider.aws_args import AwsArgs
    from airflow_sm_provider.hooks.champion import ChampionStore
    from airflow_sm_provider.reporting.model import Objective
    from airflow_sm_provider.tracking.base import TrackedRun, Tracker

log = logging.getLogger(__name__)
TRAINING_TEMPLATE = "sagemaker_training_pipeline"


class _Experiment:
    """One experiment's runs and champion document, read through one AWS connection."""

    def __init__(self, aws: AwsArgs, bucket: str, prefix: str, experiment: str) -> None:
        from airflow_sm_provider.hooks.champion import ChampionStore
        from airflow_sm_provider.hooks.metrics import metrics_hook
        from airflow_sm_provider.tracking.base import open_tracker

        self.name = experiment
        self.hook = metrics_hook(aws)
        self.store: ChampionStore = ChampionStore(self.hook, bucket, prefix, experiment)
        self.tracker: Tracker = open_tracker(aws=aws)

    def runs(self) -> dict[str, TrackedRun]:
        return {run.ref.record: run for run in self.tracker.experiment_runs(self.name)}

    def champion(self, runs: Mapping[str, Contender]) -> tuple[ChampionRecord | None, Contender | None]:
        """The document's champion record, and its run as it is now (None when it is gone)."""
        previous = read_document(self.store.read(), self.store.uri)
        if previous is None:
            return None, None
        found = runs.get(previous.record)
        if found is None:
            log.warning("Champion %s of %s is no longer in the experiment", previous.record, self.store.uri)
        return previous, found


def find_source(
    aws: AwsArgs, *, bucket: str, prefix: str, experiment: str, objective: Objective, data_prefix: str = ""
) -> dict[str, Any]:
    """What to retrain and whom it challenges.

    Returns ``source`` (the best completed run, with ``hyperparameters`` as its job had them
    and the ``channels`` to train on: ``data_prefix``/train, /validation when given, else the
    source run's own), ``champion`` (the current champion's run, or None) and
    ``baseline_job``: the job the report compares the challenger with (the champion's, or the
    source's when there is no champion yet).
    """
    place = _Experiment(aws, bucket, prefix, experiment)
    runs = place.runs()
    contenders = {record: contender(run, objective.metric) for record, run in runs.items()}
    best = best_completed(contenders.values(), objective)
    if best is None or not best.job:
        raise ValueError(
            f"experiment {experiment!r} has no completed run with a final {objective.metric} "
            f"({len(runs)} run(s) in all): run {TRAINING_TEMPLATE} first with experiment={experiment}"
        )
    _, champion = place.champion(contenders)
    if data_prefix:
        channels = {channel: f"{data_prefix.rstrip('/')}/{channel}" for channel in CHANNELS}
    else:
        inputs = runs[best.record].inputs
        missing = [channel for channel in CHANNELS if not inputs.get(channel)]
        if missing:
            raise ValueError(
                f"run {best.record} has no input artifact {', '.join(missing)}: give data_prefix"
            )
        channels = {channel: inputs[channel] for channel in CHANNELS}
    (described,) = place.hook.describe_runs([best.job])
    log.info("Retraining the configuration of %s (%s); champion: %s", best.record, best.job, champion)
    return {
        "source": {**best.to_dict(), "hyperparameters": described.hyperparameters, "channels": channels},
        "champion": champion.to_dict() if champion else None,
        "baseline_job": champion.job if champion and champion.job else best.job,
    }


def record_decision(
    aws: AwsArgs,
    *,
    bucket: str,
    prefix: str,
    experiment: str,
    objective: Objective,
    challenger_job: Mapping[str, Any] | None,
    min_delta: float = 0.0,
    report: str | None = None,
    dag_id: str,
    run_id: str,
) -> dict[str, Any]:
    """Decide champion vs challenger; write the document and the tags when there is a winner.

    ``challenger_job`` is the training task's XCom (its job summary with ``run``), None when
    the task failed before its job existed. Returns ``outcome``, ``reason``, ``champion``
    (the winner's record, or None), ``challenger`` (as compared), ``challenger_eligible``
    (it completed with a value: it could win) and ``document`` (its URI, or None when
    nothing was written).
    """
    from airflow_sm_provider.tracking.base import RunRef

    place = _Experiment(aws, bucket, prefix, experiment)
    contenders = {record: contender(run, objective.metric) for record, run in place.runs().items()}
    previous, champion = place.champion(contenders)
    challenger = None
    if challenger_job and challenger_job.get("run"):
        ref = RunRef.from_xcom(challenger_job["run"])
        challenger = contenders.get(ref.record)
        if challenger is None:  # Search is index-backed: a new run may show a little later
            raise RuntimeError(f"challenger run {ref.record} is not in the experiment's lookup yet")
    decision = decide(champion, challenger, objective, min_delta)
    log.info("Champion vs challenger: %s", decision.reason)
    document = None
    if decision.winner is not None:
        now = datetime.now(UTC)
        context = DecisionContext(experiment, objective, now, dag_id, run_id, report)
        document = place.store.write(champion_document(decision, previous, context))
        since = champion_since(decision, previous, now.date())
        place.store.tag(tag_changes(decision, contenders.values(), since, now.date()))
    return {
        "outcome": decision.outcome.value,
        "reason": decision.reason,
        "champion": decision.winner.record if decision.winner else None,
        "challenger": challenger.to_dict() if challenger else None,
        "challenger_eligible": bool(challenger and challenger.eligible),
        "document": document,
    }
