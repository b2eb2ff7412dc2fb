"""Charts: asserted on the figure objects (limits, best point, legend, grey lines), then rendered."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from airflow_sm_provider import plotting
from airflow_sm_provider.metrics.series import empty_frame, from_metrics_json, merge

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _sweep(n_runs: int, steps: int = 20) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    frames, params = [], {}
    for r in range(n_runs):
        run = f"run-{r:02d}"
        rate = 0.05 * (r + 1)
        params[run] = {"lr": f"{rate:.2f}", "epochs": str(steps), "seed": "7"}
        loss = [2.0 * math.exp(-rate * s) + 0.1 for s in range(steps)]
        acc = [1 - v / 3 for v in loss]
        frames.append(from_metrics_json({"metrics": {"loss": loss, "acc": acc}}, run, f"job-{r}"))
    return merge(frames), params


def test_ylimits_cover_finite_values_per_metric() -> None:
    frame = from_metrics_json({"metrics": {"loss": [1.0, "NaN", "Infinity", 3.0], "acc": [0.5]}}, "r", "j")
    limits = plotting.metric_ylimits(frame)
    low, high = limits["loss"]
    assert low < 1.0 and 3.0 < high < 4.0  # inf ignored, range padded
    assert limits["acc"][0] < 0.5 < limits["acc"][1]  # a single value still gets a range


def test_ylimits_on_a_log_scale_use_positive_values() -> None:
    frame = from_metrics_json({"metrics": {"loss": [0.0, 0.01, 100.0]}}, "r", "j")
    low, high = plotting.metric_ylimits(frame, log_metrics=["loss"])["loss"]
    assert 0 < low < 0.01 and high > 100.0


def test_same_y_range_for_one_metric_across_every_chart() -> None:
    frame, params = _sweep(3)
    limits = plotting.metric_ylimits(frame)
    overlay = plotting.overlay_figure(frame, "loss", hyperparameters_by_run=params, ylim=limits["loss"])
    expected = overlay.axes[0].get_ylim()
    for run in params:
        fig = plotting.run_figure(frame, run, ylimits=limits)
        by_metric = {ax.get_ylabel(): ax.get_ylim() for ax in fig.axes if ax.get_visible()}
        assert by_metric["loss"] == expected
        assert by_metric["acc"] == limits["acc"]


def test_overlay_legend_names_runs_with_differing_params_and_marks_the_best() -> None:
    frame, params = _sweep(3)
    fig = plotting.overlay_figure(frame, "loss", hyperparameters_by_run=params, direction="min")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("best (min): ")
    assert "run-02" in labels[0]  # the fastest-decaying run reaches the lowest loss
    assert "run-00 (lr=0.05)" in labels and "run-02 (lr=0.15)" in labels
    assert not any("seed" in label or "epochs" in label for label in labels)  # same in every run
    best = min(frame.loc[frame["metric"] == "loss", "value"])
    star = next(c for c in ax.collections if c.get_label().startswith("best"))
    assert star.get_offsets()[0][1] == pytest.approx(best)
    assert ax.get_title() == "loss: 3 runs"
    assert ax.get_xlabel() == "step (epoch)" and ax.get_ylabel() == "loss"


def test_best_point_follows_direction() -> None:
    frame, params = _sweep(3)
    fig = plotting.overlay_figure(frame, "acc", hyperparameters_by_run=params, direction="max")
    star = next(c for c in fig.axes[0].collections if c.get_label().startswith("best"))
    assert star.get_offsets()[0][1] == pytest.approx(frame.loc[frame["metric"] == "acc", "value"].max())
    with pytest.raises(ValueError, match="direction"):
        plotting.overlay_figure(frame, "acc", direction="up")


def test_past_20_runs_only_the_top_k_are_coloured() -> None:
    frame, params = _sweep(25)
    fig = plotting.overlay_figure(frame, "loss", hyperparameters_by_run=params, top_k=5, log_scale=True)
    ax = fig.axes[0]
    lines = ax.get_lines()
    grey = [line for line in lines if line.get_color() == plotting.GREY]
    assert len(lines) == 25 and len(grey) == 20
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "other runs (20)" in labels
    assert sum(label.startswith("run-") for label in labels) == 5
    assert "run-24 (lr=1.25)" in labels  # the best five are the fastest to decay
    assert ax.get_yscale() == "log"


def test_non_finite_points_are_shown() -> None:
    frame = from_metrics_json({"metrics": {"loss": [1.0, 0.5, "NaN"]}}, "r", "j")
    fig = plotting.run_figure(frame, "r")
    labels = [c.get_label() for c in fig.axes[0].collections]
    assert "non-finite value (NaN/inf)" in labels


def test_failed_and_empty_runs_get_a_chart_that_says_so() -> None:
    failed = plotting.status_figure("run-x", reason="AlgorithmError: out of memory")
    assert "Failed: AlgorithmError: out of memory" in [t.get_text() for t in failed.axes[0].texts]
    empty = plotting.run_figure(empty_frame(), "run-y")
    assert [t.get_text() for t in empty.axes[0].texts] == ["no metrics"]
    overlay = plotting.overlay_figure(empty_frame(), "loss")
    assert [t.get_text() for t in overlay.axes[0].texts] == ["no points for this metric"]
    assert plotting.metric_ylimits(empty_frame()) == {}


def test_differing_params() -> None:
    params = {"a": {"lr": "0.1", "seed": "1"}, "b": {"lr": "0.2", "seed": "1", "extra": "x"}}
    assert plotting.differing_params(params) == ["extra", "lr"]
    assert plotting.run_label("b", params["b"], ["extra", "lr"]) == "b (extra=x, lr=0.2)"


def test_parameter_effects_charts() -> None:
    params = {f"r{i}": {"lr": str(10.0**-i), "depth": str(i % 3 + 1), "opt": "adam"} for i in range(1, 6)}
    objective: dict[str, float | None] = {f"r{i}": 1.0 / i for i in range(1, 6)}
    objective["r5"] = None  # no objective: left out
    fig = plotting.parallel_coordinates_figure(params, objective, objective_name="val_loss")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["depth", "lr\n(log scale)", "val_loss"]
    polylines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]  # not the 3 axes
    assert len(polylines) == 4
    scatters = plotting.param_scatter_figures(params, objective, objective_name="val_loss")
    assert sorted(scatters) == ["depth", "lr"]  # 'opt' is not numeric
    assert scatters["lr"].axes[0].get_xscale() == "log"
    assert scatters["lr"].axes[0].get_ylabel() == "val_loss"


def test_figures_render_to_png_at_laptop_size() -> None:
    frame, params = _sweep(3)
    fig = plotting.overlay_figure(frame, "loss", hyperparameters_by_run=params)
    png = plotting.figure_png(fig, dpi=100)
    assert png.startswith(PNG_MAGIC)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (800, 450)
