"""Charts of the tidy metric series (``metrics/series.py``), drawn with matplotlib's Agg backend.

Every chart is a :class:`matplotlib.figure.Figure` built directly on an Agg canvas: no pyplot, so
no global figure state leaks between charts, tasks or threads, and no display is needed.
matplotlib is imported inside the functions, so a DAG file importing this module pays nothing.

One metric gets the same y-range in every chart that shows it (:func:`metric_ylimits`, over
finite values; positive ones on a log scale), so runs compare by eye across the overlay and the
per-run charts. Non-finite points are kept visible: a red ``x`` at the top of the axes, at their
step. Sizes default to 8 x 4.5 inches, rendered at 110 dpi: readable on a laptop screen.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGSIZE = (8.0, 4.5)
DPI = 110
GREY_AFTER = 20  # past this many runs, only the top ones get a colour
TOP_K = 10
GREY = "#b0b0b0"
DIRECTIONS = ("min", "max")


def new_figure(figsize: tuple[float, float] = FIGSIZE) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: must be 'min' or 'max', got {direction!r}")


def metric_ylimits(frame: pd.DataFrame, *, log_metrics: Iterable[str] = ()) -> dict[str, tuple[float, float]]:
    """Per metric, one y-range for every chart: finite values (positive ones for log metrics), padded.

    A metric with nothing to scale by (only NaN, or no positive value on a log scale) is left
    out, and its charts keep matplotlib's default range.
    """
    logs = set(log_metrics)
    limits: dict[str, tuple[float, float]] = {}
    finite = frame[frame["finite"]]
    for metric, values in finite.groupby("metric")["value"]:
        if metric in logs:
            values = values[values > 0]
        if values.empty:
            continue
        low, high = float(values.min()), float(values.max())
        if metric in logs:
            span = math.log10(high) - math.log10(low) or 1.0
            limits[str(metric)] = (low / 10 ** (0.05 * span), high * 10 ** (0.05 * span))
        else:
            pad = (high - low) * 0.05 or (abs(high) * 0.05 or 1.0)
            limits[str(metric)] = (low - pad, high + pad)
    return limits


def differing_params(hyperparameters_by_run: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Hyperparameter names whose value differs between runs (or is missing in some), sorted."""
    runs = list(hyperparameters_by_run.values())
    keys = sorted({key for params in runs for key in params})
    missing = object()
    return [key for key in keys if len({repr(p.get(key, missing)) for p in runs}) > 1]


def run_label(run: str, hyperparameters: Mapping[str, Any] | None, keys: Iterable[str]) -> str:
    """``run (lr=0.1, depth=3)``: the run and only the hyperparameters that tell it apart."""
    params = hyperparameters or {}
    shown = ", ".join(f"{k}={params[k]}" for k in keys if k in params)
    return f"{run} ({shown})" if shown else run


def _best(values: pd.Series, direction: str) -> tuple[int, float] | None:
    """(index label, value) of the best finite value, or None."""
    finite = values[values.map(math.isfinite)]
    if finite.empty:
        return None
    label = finite.idxmin() if direction == "min" else finite.idxmax()
    return label, float(finite[label])


def _ranked_runs(points: pd.DataFrame, direction: str) -> list[str]:
    """Runs ordered best first by their best finite value; runs without one last, by name."""
    scored = []
    for run, group in points.groupby("run"):
        best = _best(group["value"], direction)
        score = math.inf if best is None else (best[1] if direction == "min" else -best[1])
        scored.append((score, str(run)))
    return [run for _, run in sorted(scored)]


def _mark_best(ax: Any, row: Any, label: str, size: float) -> None:
    """The best point of a curve: a gold star above the lines, named in the legend."""
    ax.scatter(
        [row["step"]],
        [row["value"]],
        marker="*",
        s=size,
        color="gold",
        edgecolors="black",
        zorder=6,
        label=label,
    )


def _mark_non_finite(ax: Axes, group: pd.DataFrame, labelled: list[bool]) -> None:
    """Red crosses along the top at the steps whose value is NaN or ±inf (labelled once)."""
    bad = group[~group["finite"]]
    if bad.empty:
        return
    label = None if labelled[0] else "non-finite value (NaN/inf)"
    labelled[0] = True
    ax.scatter(
        bad["step"],
        [0.97] * len(bad),
        transform=ax.get_xaxis_transform(),
        marker="x",
        color="red",
        s=40,
        zorder=5,
        label=label,
    )


def _style_axes(
    ax: Axes, metric: str, ylim: tuple[float, float] | None, log_scale: bool, steps: pd.Series
) -> None:
    """Labels, scale and limits; x covers every step, non-finite ones included (lines skip them)."""
    if not steps.empty:
        low, high = int(steps.min()), int(steps.max())
        pad = max(0.5, (high - low) * 0.02)
        ax.set_xlim(low - pad, high + pad)
    if log_scale:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("step (epoch)")
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)


def overlay_figure(
    frame: pd.DataFrame,
    metric: str,
    *,
    hyperparameters_by_run: Mapping[str, Mapping[str, Any]] | None = None,
    direction: str = "min",
    ylim: tuple[float, float] | None = None,
    log_scale: bool = False,
    title: str | None = None,
    top_k: int = TOP_K,
    grey_after: int = GREY_AFTER,
) -> Figure:
    """All runs' curves of one metric against step; the best point is starred and annotated.

    The legend names each run with the hyperparameters that differ between runs. Past
    ``grey_after`` runs, only the ``top_k`` best (by their best value) get a colour and a legend
    entry; the rest are thin grey lines under one "other runs" entry.
    """
    _check_direction(direction)
    fig = new_figure()
    ax = fig.add_subplot()
    points = frame[frame["metric"] == metric].sort_values(["run", "step"]).reset_index(drop=True)
    params = hyperparameters_by_run or {}
    keys = differing_params({run: params.get(run, {}) for run in points["run"].unique()})
    ranked = _ranked_runs(points, direction)
    coloured = ranked if len(ranked) <= grey_after else ranked[:top_k]
    colours = _palette(len(coloured))
    groups = dict(tuple(points.groupby("run")))
    labelled = [False]
    others = f"other runs ({len(ranked) - len(coloured)})"
    for run in reversed(ranked):  # best drawn last, on top
        group = groups[run]
        if run in coloured:
            ax.plot(
                group["step"],
                group["value"],
                color=colours[coloured.index(run)],
                linewidth=1.6,
                label=run_label(run, params.get(run), keys),
                zorder=3,
            )
        else:
            ax.plot(group["step"], group["value"], color=GREY, linewidth=0.8, zorder=2, label=others)
            others = None
        _mark_non_finite(ax, group, labelled)
    best = _best(points["value"], direction) if not points.empty else None
    if best is not None:
        row = points.loc[best[0]]
        _mark_best(
            ax, row, f"best ({direction}): {best[1]:.4g} at step {int(row['step'])}, {row['run']}", 220
        )
    _style_axes(ax, metric, ylim, log_scale, points["step"])
    ax.set_title(title or f"{metric}: {len(ranked)} run{'s' if len(ranked) != 1 else ''}")
    if points.empty:
        _say(ax, "no points for this metric")
    else:
        _legend(ax)
    return fig


def _legend(ax: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    # Best first: the star, then the runs in rank order (they were drawn worst first).
    order = sorted(range(len(labels)), key=lambda i: (not labels[i].startswith("best"), -i))
    ax.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
        frameon=False,
    )


def _palette(n: int) -> list[Any]:
    """Distinct colours, none of them grey (grey means "other runs")."""
    from matplotlib import colormaps

    if n <= 9:
        return [c for i, c in enumerate(colormaps["tab10"].colors) if i != 7][:n]
    tab20 = colormaps["tab20"].colors  # pairs of a dark and a light shade: all darks first
    colours = [tab20[i] for i in (*range(0, 20, 2), *range(1, 20, 2)) if i not in (14, 15)]
    return [colours[i % len(colours)] for i in range(n)]


def run_figure(
    frame: pd.DataFrame,
    run: str,
    *,
    ylimits: Mapping[str, tuple[float, float]] | None = None,
    log_metrics: Iterable[str] = (),
    directions: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """One run's metrics, one subplot per metric, on the y-ranges the overlays use.

    A run without points gets the "no metrics" chart of :func:`status_figure`.
    """
    points = frame[frame["run"] == run].reset_index(drop=True)
    metrics = sorted(points["metric"].unique())
    if not metrics:
        return status_figure(run)
    logs = set(log_metrics)
    cols = min(2, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = new_figure((FIGSIZE[0], max(FIGSIZE[1], 3.0 * rows)))
    fig.suptitle(title or f"{run}: metrics by step")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colours = _palette(len(metrics))
    for ax, metric, colour in zip(axes, metrics, colours, strict=False):
        group = points[points["metric"] == metric].sort_values("step")
        ax.plot(group["step"], group["value"], color=colour, linewidth=1.6)
        direction = (directions or {}).get(metric)
        best = _best(group["value"], direction) if direction in DIRECTIONS else None
        if best is not None:
            row = group.loc[best[0]]
            _mark_best(ax, row, f"best: {best[1]:.4g} at step {int(row['step'])}", 160)
        _mark_non_finite(ax, group, [False])
        _style_axes(ax, metric, (ylimits or {}).get(metric), metric in logs, group["step"])
        ax.set_title(metric, fontsize="medium")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", frameon=False, loc="best")
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    return fig


def _say(ax: Axes, text: str, color: str = "dimgray") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=14, color=color)


def status_figure(run: str, *, reason: str | None = None) -> Figure:
    """The chart of a run with nothing to draw: "no metrics", or "Failed: <reason>"."""
    fig = new_figure()
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(run)
    text = f"Failed: {reason}" if reason else "no metrics"
    _say(ax, _wrap(text, 70), "firebrick" if reason else "dimgray")
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:8]) or text


def numeric_params(hyperparameters_by_run: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per hyperparameter whose values are all numbers (SageMaker passes them as strings) and
    differ between runs, the value per run."""
    out: dict[str, dict[str, float]] = {}
    for key in differing_params(hyperparameters_by_run):
        values: dict[str, float] = {}
        for run, params in hyperparameters_by_run.items():
            try:
                values[run] = float(params[key])
            except (KeyError, TypeError, ValueError):
                break
        else:
            if all(math.isfinite(v) for v in values.values()):
                out[key] = values
    return out


def _objective_runs(objective_by_run: Mapping[str, float | None]) -> dict[str, float]:
    return {r: float(v) for r, v in objective_by_run.items() if v is not None and math.isfinite(float(v))}


def parallel_coordinates_figure(
    hyperparameters_by_run: Mapping[str, Mapping[str, Any]],
    objective_by_run: Mapping[str, float | None],
    *,
    objective_name: str,
    direction: str = "min",
) -> Figure:
    """Numeric hyperparameters → objective: one line per run, coloured by the objective.

    Each axis is scaled to its own range (labels show the real values); runs without a finite
    objective are left out. Better runs are drawn last, on top.
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    _check_direction(direction)
    objective = _objective_runs(objective_by_run)
    params = numeric_params({r: hyperparameters_by_run.get(r, {}) for r in objective})
    fig = new_figure()
    ax = fig.add_subplot()
    ax.set_title(f"hyperparameters → {objective_name}")
    names = [*sorted(params), objective_name]
    if not objective or not params:
        ax.set_axis_off()
        _say(ax, "no numeric hyperparameter that differs between runs with an objective")
        return fig
    columns = [params[name] for name in names[:-1]] + [objective]
    ranges = [(min(c.values()), max(c.values())) for c in columns]
    logs = [_wide_positive(c) for c in columns]
    norm = Normalize(*ranges[-1])
    cmap = colormaps["viridis" if direction == "min" else "viridis_r"]  # best is darkest
    order = sorted(objective, key=lambda r: objective[r], reverse=direction == "min")
    for run in order:
        ys = [_unit(c[run], lo, hi, log) for c, (lo, hi), log in zip(columns, ranges, logs, strict=True)]
        ax.plot(range(len(names)), ys, color=cmap(norm(objective[run])), linewidth=1.4, alpha=0.85)
    for i, (lo, hi) in enumerate(ranges):
        if logs[i]:
            names[i] += "\n(log scale)"
        ax.axvline(i, color="black", linewidth=0.8)
        ax.text(i, -0.04, f"{lo:.3g}", ha="center", va="top", fontsize="small")
        ax.text(i, 1.04, f"{hi:.3g}", ha="center", va="bottom", fontsize="small")
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.2, len(names) - 0.8)
    ax.set_ylim(-0.12, 1.12)
    ax.set_yticks([])
    for side in ("left", "right", "top", "bottom"):
        ax.spines[side].set_visible(False)
    from matplotlib.cm import ScalarMappable

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=objective_name)
    return fig


def _wide_positive(values: Mapping[str, float]) -> bool:
    """True when values are all positive and span two orders of magnitude: draw them on a log axis."""
    low, high = min(values.values()), max(values.values())
    return low > 0 and high / low >= 100


def _unit(value: float, low: float, high: float, log: bool) -> float:
    """``value`` placed on [0, 1] between ``low`` and ``high`` (in log space if ``log``)."""
    if log:
        value, low, high = math.log10(value), math.log10(low), math.log10(high)
    return (value - low) / ((high - low) or 1.0)


def param_scatter_figures(
    hyperparameters_by_run: Mapping[str, Mapping[str, Any]],
    objective_by_run: Mapping[str, float | None],
    *,
    objective_name: str,
    direction: str = "min",
) -> dict[str, Figure]:
    """Per numeric hyperparameter that differs, a scatter of its value against the objective."""
    _check_direction(direction)
    objective = _objective_runs(objective_by_run)
    params = numeric_params({r: hyperparameters_by_run.get(r, {}) for r in objective})
    figures = {}
    best_run = (
        (min if direction == "min" else max)(objective, key=objective.__getitem__) if objective else None
    )
    for name, values in sorted(params.items()):
        fig = new_figure((6.0, 4.0))
        ax = fig.add_subplot()
        runs = sorted(values)
        ax.scatter([values[r] for r in runs], [objective[r] for r in runs], color="tab:blue", s=36)
        if best_run is not None:
            ax.scatter(
                [values[best_run]],
                [objective[best_run]],
                marker="*",
                s=220,
                color="gold",
                edgecolors="black",
                zorder=5,
                label=f"best: {best_run}",
            )
            ax.legend(fontsize="small", frameon=False)
        if _wide_positive(values):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(objective_name)
        ax.set_title(f"{objective_name} by {name}")
        ax.grid(True, alpha=0.3)
        figures[name] = fig
    return figures
