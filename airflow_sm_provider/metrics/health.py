"""Health rules over the tidy per-step series: which runs went wrong, why, and from which step.

SageMaker Debugger's built-in rules (ExplodingTensor, LossNotDecreasing, Overfit, Overtraining,
StalledTrainingRule) are closed to new customers and need its hooks in the container; these
rules read only the metrics every job already logs, so they work for any container.

Theory of operation: the series (columns ``run, job, metric, step, value, timestamp, source,
finite``) is sorted once by (run, metric, step) into flat numpy arrays where each (run, metric)
is one contiguous group. Each rule is a small frozen dataclass whose fields are its documented
defaults; it builds a boolean "fires here" array over the rows it cares about, and the first
firing row of each group becomes a :class:`HealthFlag` with a one-line reason and its step.
Everything is vectorised (numpy over the whole sweep, no Python loop per row or per run), so
3 M rows (1,000 runs x 3 metrics x 1,000 steps) take a few CPU seconds (benchmarks/report_scale.py).
"Steps" in patience-like parameters count logged points, as Debugger counts saved steps.

Which metrics are losses is configurable on :class:`HealthConfig`: the train and validation
losses by exact name (Overfit and Overtraining compare or follow them), and every metric whose
name contains ``loss_pattern`` (LossNotDecreasing and Divergence watch each of them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SERIES_COLUMNS = ("run", "job", "metric", "step", "value", "timestamp", "source", "finite")
RUNNING_STATUSES = frozenset({"InProgress"})


@dataclass(frozen=True)
class HealthFlag:
    """One finding: ``rule`` fired for ``run`` (on ``metric``, when the rule is per metric) at ``step``."""

    run: str
    rule: str
    metric: str | None
    step: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Rows:
    """Flat arrays of (a subset of) the sorted series, with group starts and positions in group.

    A group id is ``run_code * len(metrics) + metric_code``, so run and metric come back from it.
    """

    def __init__(self, runs: list[str], metrics: list[str], arrays: dict[str, np.ndarray]) -> None:
        import numpy as np

        self.runs, self.metrics = runs, metrics
        self.gid, self.step, self.value = arrays["gid"], arrays["step"], arrays["value"]
        self.ts, self._metric = arrays.get("ts"), arrays.get("metric")
        self.finite = np.isfinite(self.value)
        n = len(self.gid)
        self.idx = np.arange(n)
        self.start = np.ones(n, dtype=bool)
        self.start[1:] = self.gid[1:] != self.gid[:-1]
        self.pos = self.idx - np.maximum.accumulate(np.where(self.start, self.idx, 0))

    @property
    def run(self) -> np.ndarray:
        return self.gid // max(len(self.metrics), 1)

    def take(self, mask: np.ndarray) -> _Rows:
        return _Rows(self.runs, self.metrics, {k: getattr(self, k)[mask] for k in ("gid", "step", "value")})

    def metric_mask(self, keep: Callable[[str], bool]) -> np.ndarray:
        import numpy as np

        wanted = np.array([keep(name) for name in self.metrics], dtype=bool)
        codes = self._metric if self._metric is not None else self.gid % len(self.metrics)
        return wanted[codes]

    def streak(self, cond: np.ndarray) -> np.ndarray:
        """Length of the run of consecutive true values of ``cond`` ending at each row, per group."""
        import numpy as np

        reset = np.where(~cond, self.idx, np.where(self.start, self.idx - 1, -1))
        return self.idx - np.maximum.accumulate(reset)

    def shifted(self, values: np.ndarray, k: int) -> np.ndarray:
        """``values`` of the row ``k`` positions earlier in the same group (NaN where there is none)."""
        import numpy as np

        out = np.full(len(values), np.nan)
        ok = np.nonzero(self.pos >= k)[0]
        out[ok] = values[ok - k]
        return out

    def first_fired(self, fired: np.ndarray) -> np.ndarray:
        """Row index of the first firing row of each group."""
        import numpy as np

        rows = np.nonzero(fired)[0]
        groups = self.gid[rows]
        return rows[np.r_[True, groups[1:] != groups[:-1]]] if len(rows) else rows

    def name(self, i: int) -> str:
        """The metric of row ``i``."""
        return self.metrics[self.gid[i] % len(self.metrics)]

    def flags(self, rule: str, fired: np.ndarray, reason: Callable[[int], str]) -> list[HealthFlag]:
        return [
            HealthFlag(
                run=self.runs[self.gid[i] // len(self.metrics)],
                rule=rule,
                metric=self.name(i),
                step=int(self.step[i]),
                reason=reason(int(i)),
            )
            for i in self.first_fired(fired)
        ]


def _num(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True)
class _Context:
    rows: _Rows
    config: HealthConfig
    run_names: tuple[str, ...]
    statuses: Mapping[str, str]
    now: datetime | None

    def is_loss(self, name: str) -> bool:
        cfg = self.config
        return name in (cfg.train_loss, cfg.validation_loss) or cfg.loss_pattern.lower() in name.lower()


class HealthRule:
    """Base of the rules: a ``name``, the Debugger rule it stands in for, and ``check``."""

    name: ClassVar[str]
    debugger_rule: ClassVar[str | None] = None

    def check(self, ctx: _Context) -> list[HealthFlag]:
        raise NotImplementedError

    def _positive(self, **fields: float) -> None:
        for field_name, value in fields.items():
            if not value > 0:
                raise ValueError(f"{type(self).__name__}.{field_name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class NonFinite(HealthRule):
    """Any metric logged as NaN or +/-inf (Debugger's ExplodingTensor, on the logged metrics)."""

    name: ClassVar[str] = "non_finite"
    debugger_rule: ClassVar[str | None] = "ExplodingTensor"

    def check(self, ctx: _Context) -> list[HealthFlag]:
        import numpy as np

        rows = ctx.rows
        fired = ~rows.finite
        counts = np.bincount(rows.gid[fired], minlength=int(rows.gid.max(initial=-1)) + 1)

        def reason(i: int) -> str:
            count = counts[rows.gid[i]]
            return f"{rows.name(i)} is {rows.value[i]} at step {rows.step[i]} ({count} non-finite values)"

        return rows.flags(self.name, fired, reason)


@dataclass(frozen=True)
class LossNotDecreasing(HealthRule):
    """A loss that did not fall over ``num_steps`` points (by ``diff_percent`` %, or at all when unset).

    Checked every ``num_steps`` points against the value ``num_steps`` points earlier, as Debugger does.
    """

    name: ClassVar[str] = "loss_not_decreasing"
    debugger_rule: ClassVar[str | None] = "LossNotDecreasing"
    num_steps: int = 10
    diff_percent: float | None = None

    def __post_init__(self) -> None:
        self._positive(num_steps=self.num_steps)
        if self.diff_percent is not None and not 0 <= self.diff_percent < 100:
            raise ValueError(f"LossNotDecreasing.diff_percent must be in [0, 100), got {self.diff_percent!r}")

    def check(self, ctx: _Context) -> list[HealthFlag]:
        rows = ctx.rows
        rows = rows.take(rows.metric_mask(ctx.is_loss) & rows.finite)
        before = rows.shifted(rows.value, self.num_steps)
        before_step = rows.shifted(rows.step.astype(float), self.num_steps)
        factor = 1 - (self.diff_percent or 0) / 100
        checked = (rows.pos > 0) & (rows.pos % self.num_steps == 0) & (before == before)
        fired = checked & ~(rows.value < before * factor)
        wanted = f"by {self.diff_percent:g}%" if self.diff_percent else "at all"

        def reason(i: int) -> str:
            return (
                f"{rows.name(i)} did not decrease {wanted} over {self.num_steps} steps: "
                f"{_num(before[i])} at step {int(before_step[i])}, "
                f"{_num(rows.value[i])} at step {rows.step[i]}"
            )

        return rows.flags(self.name, fired, reason)


def _paired_losses(ctx: _Context) -> tuple[_Rows, np.ndarray]:
    """Validation losses (as rows) and the train losses logged at the same (run, step)."""
    import pandas as pd

    rows, config = ctx.rows, ctx.config
    train = rows.take(rows.metric_mask(lambda m: m == config.train_loss) & rows.finite)
    val = rows.take(rows.metric_mask(lambda m: m == config.validation_loss) & rows.finite)
    left = pd.DataFrame({"run": train.run, "step": train.step, "train": train.value})
    right = pd.DataFrame({"run": val.run, "step": val.step, "gid": val.gid, "value": val.value})
    pairs = right.merge(left, on=["run", "step"]).sort_values(["gid", "step"])
    arrays = {key: pairs[key].to_numpy() for key in ("gid", "step", "value")}
    return _Rows(rows.runs, rows.metrics, arrays), pairs["train"].to_numpy(dtype=float)


@dataclass(frozen=True)
class Overfit(HealthRule):
    """Validation loss above train loss by more than ``ratio_threshold`` for ``patience`` points.

    The ratio is ``(validation - train) / train``, from ``start_step`` on, where both are logged
    at the same step and the train loss is positive.
    """

    name: ClassVar[str] = "overfit"
    debugger_rule: ClassVar[str | None] = "Overfit"
    ratio_threshold: float = 0.1
    patience: int = 1
    start_step: int = 0

    def __post_init__(self) -> None:
        self._positive(ratio_threshold=self.ratio_threshold, patience=self.patience)

    def check(self, ctx: _Context) -> list[HealthFlag]:
        import numpy as np

        pairs, train = _paired_losses(ctx)
        val = pairs.value
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(train > 0, (val - train) / train, np.nan)
        cond = (pairs.step >= self.start_step) & (ratio > self.ratio_threshold)
        fired = pairs.streak(cond) >= self.patience

        def reason(i: int) -> str:
            return (
                f"validation loss {ratio[i]:.0%} above train loss ({_num(val[i])} vs {_num(train[i])}) "
                f"for {self.patience} step(s), threshold {self.ratio_threshold:.0%}"
            )

        return pairs.flags(self.name, fired, reason)


@dataclass(frozen=True)
class Overtraining(HealthRule):
    """Train (validation) loss that stopped improving for ``patience_train`` (``patience_validation``) points.

    Fires where the best value of the last ``patience`` points is not below the best before them
    by more than ``delta`` times that best (relative, so one default fits losses of any scale).
    """

    name: ClassVar[str] = "overtraining"
    debugger_rule: ClassVar[str | None] = "Overtraining"
    patience_train: int = 5
    patience_validation: int = 10
    delta: float = 0.1

    def __post_init__(self) -> None:
        self._positive(patience_train=self.patience_train, patience_validation=self.patience_validation)
        if self.delta < 0:
            raise ValueError(f"Overtraining.delta must be >= 0, got {self.delta!r}")

    def check(self, ctx: _Context) -> list[HealthFlag]:
        import numpy as np
        import pandas as pd

        flags: list[HealthFlag] = []
        patience_of = {
            ctx.config.train_loss: self.patience_train,
            ctx.config.validation_loss: self.patience_validation,
        }
        for name, patience in patience_of.items():
            rows = ctx.rows.take(ctx.rows.metric_mask(lambda m, name=name: m == name) & ctx.rows.finite)
            best = pd.Series(rows.value).groupby(rows.gid).cummin().to_numpy()
            before = rows.shifted(best, patience)
            before_step = rows.shifted(rows.step.astype(float), patience)
            # best now = min(best before the window, best in the window): one comparison suffices.
            fired = (before == before) & (best >= before - self.delta * np.abs(before))

            def reason(
                i: int, rows: _Rows = rows, before: np.ndarray = before, step: np.ndarray = before_step
            ) -> str:
                return (
                    f"{rows.name(i)} has not improved by {self.delta:.0%} over {patience_of[rows.name(i)]} "
                    f"steps (best {_num(before[i])} by step {int(step[i])}, {_num(rows.value[i])} at step "
                    f"{rows.step[i]})"
                )

            flags += rows.flags(self.name, fired, reason)
        return flags


@dataclass(frozen=True)
class Divergence(HealthRule):
    """A loss above ``factor`` x its running minimum (or non-finite) for ``consecutive`` points.

    No Debugger twin. Only for positive running minima, where "twice as large" means something.
    """

    name: ClassVar[str] = "divergence"
    factor: float = 2.0
    consecutive: int = 3

    def __post_init__(self) -> None:
        self._positive(consecutive=self.consecutive)
        if not self.factor > 1:
            raise ValueError(f"Divergence.factor must be > 1, got {self.factor!r}")

    def check(self, ctx: _Context) -> list[HealthFlag]:
        import numpy as np
        import pandas as pd

        rows = ctx.rows.take(ctx.rows.metric_mask(ctx.is_loss))
        finite_values = pd.Series(np.where(rows.finite, rows.value, np.nan))
        running_min = finite_values.groupby(rows.gid).cummin().groupby(rows.gid).ffill().to_numpy()
        positive = running_min > 0
        cond = positive & (~rows.finite | (rows.value > self.factor * running_min))
        fired = rows.streak(cond) >= self.consecutive

        def reason(i: int) -> str:
            return (
                f"{rows.name(i)} above {self.factor:g}x its running minimum "
                f"{_num(running_min[i])} for {self.consecutive} consecutive steps ({_num(rows.value[i])} "
                f"at step {rows.step[i]})"
            )

        return rows.flags(self.name, fired, reason)


@dataclass(frozen=True)
class TooFewSteps(HealthRule):
    """A run that logged fewer than ``min_steps`` distinct steps over all its metrics (or none)."""

    name: ClassVar[str] = "too_few_steps"
    min_steps: int = 3

    def __post_init__(self) -> None:
        self._positive(min_steps=self.min_steps)

    def check(self, ctx: _Context) -> list[HealthFlag]:
        import pandas as pd

        rows = ctx.rows
        frame = pd.DataFrame({"run": rows.run, "step": rows.step})
        per_run = frame.groupby("run")["step"].agg(["nunique", "max"])
        seen = {rows.runs[code]: (int(n), int(last)) for code, n, last in per_run.itertuples()}
        flags = []
        for run in dict.fromkeys([*ctx.run_names, *seen]):
            count, last = seen.get(run, (0, None))
            if count < self.min_steps:
                reason = f"only {count} step(s) logged, fewer than {self.min_steps}"
                flags.append(HealthFlag(run=run, rule=self.name, metric=None, step=last, reason=reason))
        return flags


@dataclass(frozen=True)
class Stalled(HealthRule):
    """A running job (status ``InProgress``) with no new metric for ``threshold_seconds``."""

    name: ClassVar[str] = "stalled"
    debugger_rule: ClassVar[str | None] = "StalledTrainingRule"
    threshold_seconds: float = 1800.0

    def __post_init__(self) -> None:
        self._positive(threshold_seconds=self.threshold_seconds)

    def check(self, ctx: _Context) -> list[HealthFlag]:
        import pandas as pd

        if ctx.now is None or not ctx.statuses:
            return []
        rows = ctx.rows
        now = pd.Timestamp(ctx.now)
        now_ns = (now if now.tzinfo else now.tz_localize("UTC")).value
        frame = pd.DataFrame({"run": rows.run, "ts": rows.ts, "step": rows.step})
        latest = frame.sort_values(["run", "ts", "step"]).groupby("run").tail(1)
        flags = []
        for code, ts, step in latest.itertuples(index=False):
            run = rows.runs[code]
            idle = (now_ns - ts) / 1e9
            if ctx.statuses.get(run) in RUNNING_STATUSES and idle > self.threshold_seconds:
                reason = (
                    f"no new metric for {idle / 60:.0f} min while running "
                    f"(last at step {step}, threshold {self.threshold_seconds / 60:g} min)"
                )
                flags.append(HealthFlag(run=run, rule=self.name, metric=None, step=int(step), reason=reason))
        return flags


@dataclass(frozen=True)
class HealthConfig:
    """Which metrics are losses, and the rules to apply (set one to ``None`` to turn it off)."""

    train_loss: str = "train:loss"
    validation_loss: str = "validation:loss"
    loss_pattern: str = "loss"
    non_finite: NonFinite | None = NonFinite()
    loss_not_decreasing: LossNotDecreasing | None = LossNotDecreasing()
    overfit: Overfit | None = Overfit()
    overtraining: Overtraining | None = Overtraining()
    divergence: Divergence | None = Divergence()
    too_few_steps: TooFewSteps | None = TooFewSteps()
    stalled: Stalled | None = Stalled()

    def rules(self) -> list[HealthRule]:
        candidates = (
            self.non_finite,
            self.loss_not_decreasing,
            self.overfit,
            self.overtraining,
            self.divergence,
            self.too_few_steps,
            self.stalled,
        )
        return [rule for rule in candidates if rule is not None]


def factorize_blocks(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes and names of a text column; factorises only where the value changes.

    The series arrives in blocks of one run and one metric, so this touches a few thousand
    strings instead of millions (pandas' factorize of millions of Python strings takes seconds).
    """
    import numpy as np
    import pandas as pd

    values = column.to_numpy(dtype=object)
    change = np.ones(len(values), dtype=bool)
    change[1:] = values[1:] != values[:-1]
    head_codes, names = pd.factorize(values[change])
    return head_codes.astype("int64")[np.cumsum(change) - 1], [str(name) for name in names]


def _rows(series: pd.DataFrame) -> _Rows:
    import numpy as np

    missing = [c for c in ("run", "metric", "step", "value", "timestamp") if c not in series.columns]
    if missing:
        expected = ", ".join(SERIES_COLUMNS)
        raise ValueError(f"series: missing column(s) {', '.join(missing)}; expected {expected}")
    run_codes, runs = factorize_blocks(series["run"])
    metric_codes, metrics = factorize_blocks(series["metric"])
    gid = run_codes * max(len(metrics), 1) + metric_codes
    step = series["step"].to_numpy(dtype="int64")
    arrays = {
        "gid": gid,
        "metric": metric_codes,
        "step": step,
        "value": series["value"].to_numpy(dtype=float),
        "ts": series["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64"),
    }
    same_group = gid[1:] == gid[:-1]
    if not np.all((gid[1:] > gid[:-1]) | (same_group & (step[1:] > step[:-1]))):
        order = np.lexsort((step, gid))
        arrays = {key: array[order] for key, array in arrays.items()}
    return _Rows(runs, metrics, arrays)


def evaluate_health(
    series: pd.DataFrame,
    *,
    config: HealthConfig | None = None,
    runs: Iterable[str] = (),
    statuses: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> list[HealthFlag]:
    """Every rule's findings for the runs in ``series``, grouped by run in first-seen order.

    ``runs`` names runs that may have logged nothing (so "too few steps" can flag them);
    ``statuses`` (run -> TrainingJobStatus) and ``now`` let "stalled" judge running jobs.
    """
    config = config or HealthConfig()
    ctx = _Context(_rows(series), config, tuple(runs), statuses or {}, now)
    flags = [flag for rule in config.rules() for flag in rule.check(ctx)]
    order = {run: i for i, run in enumerate(dict.fromkeys([*ctx.run_names, *ctx.rows.runs]))}
    return sorted(flags, key=lambda f: (order.get(f.run, len(order)), f.step if f.step is not None else -1))
