"""The comparison report of a sweep's runs as plain records: what the renderers draw.

Plain records in (:class:`RunRecord`, one per training job, and the tidy per-step series),
plain records out (:class:`Report`). No AWS or Airflow here: the operator gathers the inputs
and uploads the artifacts.

- Ranking: by the objective's final value (``rank_by="final"``, what SageMaker tuning uses)
  or its best value over the steps (``"best"``); ties go to the earlier best step, then the
  name. Runs without a finite value come after the ranked ones; failed and stopped runs have
  their own section with their reasons.
- Cost: ``price (USD/hour) x instance_count x billable_seconds / 3600`` from
  :data:`DEFAULT_PRICES_USD_PER_HOUR` (approximate on-demand training prices, us-east-1, late
  2025; pass your own table for your region or discounts). Billable seconds already reflect
  spot savings. An unknown instance type gives no cost and a note.
- Parameter effects: for each numeric hyperparameter, Spearman's rank correlation with the
  objective over the ranked runs (``None`` with fewer than 3 points or a constant column).
- Non-finite numbers never reach JSON as ``NaN``: :meth:`Report.to_dict` writes ``null`` and
  lists the field under the run's ``non_finite`` with what it was (``"nan"``, ``"inf"``, ``"-inf"``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from airflow_sm_provider.metrics.health import HealthConfig, HealthFlag, evaluate_health, factorize_blocks

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SCHEMA_VERSION = "1.0"
FAILED_STATUSES = frozenset({"Failed", "Stopped"})
DIRECTIONS = ("Minimize", "Maximize")
RANK_BY = ("final", "best")

DEFAULT_PRICES_USD_PER_HOUR: Mapping[str, float] = {
    "ml.m5.large": 0.115,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.m5.4xlarge": 0.922,
    "ml.c5.xlarge": 0.204,
    "ml.c5.2xlarge": 0.408,
    "ml.c5.4xlarge": 0.816,
    "ml.g4dn.xlarge": 0.736,
    "ml.g4dn.2xlarge": 1.053,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.p3.2xlarge": 3.825,
    "ml.p4d.24xlarge": 37.688,
    "ml.trn1.2xlarge": 1.546,
}


@dataclass(frozen=True)
class Objective:
    """The metric the sweep optimises and which way is better."""

    metric: str
    direction: Literal["Minimize", "Maximize"] = "Minimize"

    def __post_init__(self) -> None:
        if not self.metric:
            raise ValueError("objective.metric must be a non-empty metric name")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"objective.direction must be one of {DIRECTIONS}, got {self.direction!r}")

    def key(self, value: float) -> float:
        """Sort key: smaller is better."""
        return value if self.direction == "Minimize" else -value


def _float(value: Any) -> float | None:
    """A number from a SageMaker value (hyperparameters are strings); None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _final_metrics(value: Any) -> dict[str, float]:
    """FinalMetricDataList (``[{"MetricName", "Value"}]``) or a mapping, as name -> value."""
    if isinstance(value, Mapping):
        items = value.items()
    else:
        items = ((m.get("MetricName"), m.get("Value")) for m in value or () if isinstance(m, Mapping))
    return {str(name): number for name, raw in items if name and (number := _float(raw)) is not None}


def _count(value: Any, run: str) -> int:
    """InstanceCount: a positive integer, 1 when missing."""
    if value is None:
        return 1
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1 or isinstance(value, bool):
        raise ValueError(f"run record {run!r}: instance_count must be a positive integer, got {value!r}")
    return count


def _pairs(value: Any, key: str, val: str) -> Mapping[Any, Any]:
    """A mapping as is, or an AWS-style ``[{key: ..., val: ...}]`` list as a mapping."""
    if isinstance(value, Mapping):
        return value
    return {item.get(key): item.get(val) for item in value or () if isinstance(item, Mapping)}


@dataclass(frozen=True)
class RunRecord:
    """One run of the sweep as the operator found it (its training job and its tracking Run)."""

    name: str
    job_name: str | None = None
    status: str = "Unknown"
    failure_reason: str | None = None
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    instance_type: str | None = None
    instance_count: int = 1
    spot: bool = False
    training_seconds: float | None = None
    billable_seconds: float | None = None
    final_metrics: Mapping[str, float] = field(default_factory=dict)
    model_artifact: str | None = None
    links: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    debug_rule_statuses: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Build from a plain dict (e.g. an XCom); missing fields take their defaults.

        ``final_metrics`` may be SageMaker's FinalMetricDataList or a mapping; ``tags`` a
        mapping or a ``[{"Key", "Value"}]`` list; ``debug_rule_statuses`` a mapping or
        DebugRuleEvaluationStatuses (``[{"RuleConfigurationName", "RuleEvaluationStatus"}]``).
        """
        if not isinstance(data, Mapping) or not data.get("name"):
            raise ValueError("run record: 'name' is required and must be a non-empty string")

        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        def texts(value: Mapping[Any, Any]) -> dict[str, str]:
            return {str(k): "" if v is None else str(v) for k, v in value.items()}

        return cls(
            name=str(data["name"]),
            job_name=text("job_name"),
            status=text("status") or "Unknown",
            failure_reason=text("failure_reason"),
            hyperparameters=texts(data.get("hyperparameters") or {}),
            instance_type=text("instance_type"),
            instance_count=_count(data.get("instance_count"), str(data["name"])),
            spot=bool(data.get("spot", False)),
            training_seconds=_float(data.get("training_seconds")),
            billable_seconds=_float(data.get("billable_seconds")),
            final_metrics=_final_metrics(data.get("final_metrics")),
            model_artifact=text("model_artifact"),
            links=texts(data.get("links") or {}),
            tags=texts(_pairs(data.get("tags"), "Key", "Value")),
            debug_rule_statuses=texts(
                _pairs(data.get("debug_rule_statuses"), "RuleConfigurationName", "RuleEvaluationStatus")
            ),
        )


@dataclass
class RunSummary:
    """One run's row in the report."""

    name: str
    job_name: str | None
    status: str
    failure_reason: str | None
    rank: int | None
    objective_final: float | None
    objective_best: float | None
    best_step: int | None
    final_metrics: dict[str, float]
    hyperparameters: dict[str, str]
    instance_type: str | None
    instance_count: int
    spot: bool
    training_seconds: float | None
    billable_seconds: float | None
    spot_savings: float | None
    cost_usd: float | None
    cost_note: str | None
    model_artifact: str | None
    links: dict[str, str]
    tags: dict[str, str]
    debug_rule_statuses: dict[str, str]
    health: list[HealthFlag]


@dataclass(frozen=True)
class ParameterEffect:
    """Spearman's rank correlation of one numeric hyperparameter with the objective."""

    name: str
    points: int
    spearman: float | None
    note: str | None = None


@dataclass
class Report:
    """Everything the renderers need: leaderboard, failed runs, health, parameter effects."""

    objective: Objective
    rank_by: str
    generated_at: datetime
    runs: list[RunSummary]
    failed: list[RunSummary]
    health: list[HealthFlag]
    parameter_effects: list[ParameterEffect]
    notes: list[str] = field(default_factory=list)

    def all_runs(self) -> list[RunSummary]:
        return [*self.runs, *self.failed]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema in :mod:`airflow_sm_provider.reporting.render`), NaN-free."""

        def run_dict(run: RunSummary) -> dict[str, Any]:
            data = asdict(run)
            data["health"] = [flag.to_dict() for flag in run.health]
            data["non_finite"] = {}
            return _finite(data, data["non_finite"], "")

        effects = [asdict(e) for e in self.parameter_effects]
        return {
            "schema_version": SCHEMA_VERSION,
            "objective": asdict(self.objective),
            "rank_by": self.rank_by,
            "generated_at": self.generated_at.isoformat(),
            "runs": [run_dict(r) for r in self.runs],
            "failed": [run_dict(r) for r in self.failed],
            "health": [flag.to_dict() for flag in self.health],
            "parameter_effects": _finite(effects, {}, ""),
            "notes": list(self.notes),
        }


def _finite(value: Any, found: dict[str, str], path: str) -> Any:
    """``value`` with every non-finite float replaced by None, its path and kind noted in ``found``."""
    if isinstance(value, float) and not math.isfinite(value):
        found[path] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return None
    if isinstance(value, dict):
        return {k: _finite(v, found, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v, found, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _objective_from_series(
    series: pd.DataFrame | None, objective: Objective
) -> dict[str, tuple[float, float | None, int | None]]:
    """Per run: (last value, best finite value, first step of the best) of the objective metric.

    numpy on integer run codes: sorting millions of rows by a text column takes seconds.
    """
    if series is None or series.empty:
        return {}
    import numpy as np

    metric_codes, metrics = factorize_blocks(series["metric"])
    if objective.metric not in metrics:
        return {}
    keep = metric_codes == metrics.index(objective.metric)
    run_codes, runs = factorize_blocks(series["run"])
    run_codes = run_codes[keep]
    steps = series["step"].to_numpy(dtype="int64")[keep]
    values = series["value"].to_numpy(dtype=float)[keep]

    def first_of_each_run(order: np.ndarray) -> np.ndarray:
        codes = run_codes[order]
        return order[np.r_[True, codes[1:] != codes[:-1]]]

    last = first_of_each_run(np.lexsort((-steps, run_codes)))  # NaN included: it is the final value
    finite = np.nonzero(np.isfinite(values))[0]
    sign = 1.0 if objective.direction == "Minimize" else -1.0
    best = first_of_each_run(finite[np.lexsort((steps[finite], sign * values[finite], run_codes[finite]))])
    best_of = {int(run_codes[i]): (float(values[i]), int(steps[i])) for i in best}
    out: dict[str, tuple[float, float | None, int | None]] = {}
    for i in last:
        code = int(run_codes[i])
        out[runs[code]] = (float(values[i]), *best_of.get(code, (None, None)))
    return out


def _cost(record: RunRecord, prices: Mapping[str, float]) -> tuple[float | None, str | None]:
    if record.billable_seconds is None:
        return None, "no billable time"
    price = prices.get(record.instance_type or "")
    if price is None:
        return None, f"no price for instance type {record.instance_type!r}"
    return price * record.instance_count * record.billable_seconds / 3600, None


def _ranks(values: list[float]) -> list[float]:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation; None with fewer than 3 points or when a side is constant."""
    if len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if vx == 0 or vy == 0 else cov / math.sqrt(vx * vy)


def _parameter_effects(runs: list[RunSummary], rank_by: str) -> list[ParameterEffect]:
    names = sorted({name for run in runs for name in run.hyperparameters})
    effects = []
    for name in names:
        points = []
        for run in runs:
            y = run.objective_final if rank_by == "final" else run.objective_best
            x = _float(run.hyperparameters.get(name))
            if run.rank is not None and y is not None and x is not None and math.isfinite(x):
                points.append((x, y))
        if not points:
            continue  # not numeric (or no ranked run has it): no correlation to speak of
        rho = spearman([p[0] for p in points], [p[1] for p in points])
        note = None
        if rho is None:
            note = "fewer than 3 points" if len(points) < 3 else "constant over the runs"
        effects.append(ParameterEffect(name=name, points=len(points), spearman=rho, note=note))
    return effects


def build_report(
    runs: Iterable[RunRecord],
    series: pd.DataFrame | None,
    objective: Objective,
    *,
    rank_by: Literal["final", "best"] = "final",
    prices: Mapping[str, float] | None = None,
    health_config: HealthConfig | None = None,
    now: datetime | None = None,
) -> Report:
    """The report of ``runs`` from their records and per-step ``series`` (columns as in metrics.health).

    The final objective value is the job's FinalMetricDataList entry when it has one (what
    SageMaker tuning ranks by), else the last logged value; the best value and its step come
    from the series (the final value and no step when the series lacks the metric).
    """
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    records = list(runs)
    names = [r.name for r in records]
    if len(set(names)) != len(names):
        raise ValueError("runs: run names must be unique")
    now = now or datetime.now(UTC)
    prices = DEFAULT_PRICES_USD_PER_HOUR if prices is None else prices
    statuses = {r.name: r.status for r in records}
    flags: list[HealthFlag] = []
    if series is not None and not series.empty:
        flags = evaluate_health(series, config=health_config, runs=names, statuses=statuses, now=now)
    elif names:
        import pandas as pd

        empty = pd.DataFrame({"run": [], "metric": [], "step": [], "value": [], "timestamp": []})
        flags = evaluate_health(empty, config=health_config, runs=names, statuses=statuses, now=now)
    by_run: dict[str, list[HealthFlag]] = {}
    for flag in flags:
        by_run.setdefault(flag.run, []).append(flag)
    from_series = _objective_from_series(series, objective)
    notes: list[str] = []

    summaries = []
    for record in records:
        last, best, best_step = from_series.get(record.name, (None, None, None))
        final = record.final_metrics.get(objective.metric, last)
        if best_step is None and final is not None and math.isfinite(final):
            best = final
        cost, cost_note = _cost(record, prices)
        if cost_note and record.billable_seconds is not None:
            notes.append(f"{record.name}: {cost_note}")
        savings = None
        if record.training_seconds and record.billable_seconds is not None:
            savings = 1 - record.billable_seconds / record.training_seconds
        summaries.append(
            RunSummary(
                name=record.name,
                job_name=record.job_name,
                status=record.status,
                failure_reason=record.failure_reason,
                rank=None,
                objective_final=final,
                objective_best=best,
                best_step=best_step,
                final_metrics={k: v for k, v in record.final_metrics.items() if k != objective.metric},
                hyperparameters=dict(record.hyperparameters),
                instance_type=record.instance_type,
                instance_count=record.instance_count,
                spot=record.spot,
                training_seconds=record.training_seconds,
                billable_seconds=record.billable_seconds,
                spot_savings=savings,
                cost_usd=cost,
                cost_note=cost_note,
                model_artifact=record.model_artifact,
                links=dict(record.links),
                tags=dict(record.tags),
                debug_rule_statuses=dict(record.debug_rule_statuses),
                health=by_run.get(record.name, []),
            )
        )

    def value(run: RunSummary) -> float | None:
        v = run.objective_final if rank_by == "final" else run.objective_best
        return v if v is not None and math.isfinite(v) else None

    active = [s for s in summaries if s.status not in FAILED_STATUSES]
    ranked = sorted(
        (s for s in active if value(s) is not None),
        key=lambda s: (objective.key(value(s)), s.best_step if s.best_step is not None else math.inf, s.name),
    )
    for position, run in enumerate(ranked, start=1):
        run.rank = position
    unranked = sorted((s for s in active if value(s) is None), key=lambda s: s.name)
    failed = sorted((s for s in summaries if s.status in FAILED_STATUSES), key=lambda s: s.name)
    return Report(
        objective=objective,
        rank_by=rank_by,
        generated_at=now,
        runs=[*ranked, *unranked],
        failed=failed,
        health=flags,
        parameter_effects=_parameter_effects(ranked, rank_by),
        notes=notes,
    )
