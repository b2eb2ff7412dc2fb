"""The README's main job: the template sweep end to end on the local engine (slow, one test)."""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
EPOCHS = 12  # enough for the 10-step health rules, quicker than the demo's 30


@pytest.mark.e2e
@pytest.mark.timeout(900)  # the whole sweep; test processes run side by side on two cores
def test_main_job_runs_the_sweep_and_leaves_the_report_and_runs(tmp_path: Path, capsys) -> None:
    from airflow_sm_provider.demo import run_demo

    artifacts = tmp_path / "artifacts"
    assert run_demo(artifacts, DAGS_FOLDER, {"epochs": EPOCHS}) == 0, (
        artifacts / "dag-test.log"
    ).read_text()[-3000:]
    console = capsys.readouterr().out

    summary = json.loads((artifacts / "run-summary.json").read_text())
    assert summary["state"] == "success"
    assert set(summary["tasks"].values()) == {"success"}
    jobs = {job["name"]: job for job in summary["jobs"]}
    assert sorted(job["kind"] for job in jobs.values()) == ["processing", "training", "training", "training"]
    assert {job["status"] for job in jobs.values()} == {"Completed"}
    for name, job in jobs.items():
        log = (artifacts / "logs" / f"{name}.log").read_text()
        if job["kind"] == "training":
            assert f"epoch={EPOCHS} " in log
            with tarfile.open(artifacts / "jobs" / name / "output" / "model.tar.gz") as model:
                assert "model.pkl" in model.getnames()

    # The comparison report: every file, the sensible candidates ahead of the diverging one.
    for name in ("report.html", "report.json", "runs.csv", "metrics.csv", "experiments.json"):
        assert (artifacts / name).stat().st_size > 0, name
    assert {path.name for path in (artifacts / "plots").glob("*.png")} >= {"validation~3Aloss.png"}
    report = json.loads((artifacts / "report.json").read_text())
    ranked = report["runs"]
    assert [run["rank"] for run in ranked] == [1, 2, 3]
    assert ranked[-1]["hyperparameters"]["learning-rate"] in ("50.0", 50.0)
    diverging = ranked[-1]["name"]
    assert any(flag["run"] == diverging and flag["rule"] == "divergence" for flag in report["health"])
    with (artifacts / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["metric"] == "validation:loss"]
    assert len(rows) == 3 * EPOCHS  # one point per epoch and run, from the jobs' logs

    # The runs as SageMaker Experiments holds them: parameters, status, per-step metrics from load_run().
    runs = json.loads((artifacts / "experiments.json").read_text())
    assert len(runs) == 3
    for run in runs:
        assert run["status"] == "Completed"
        assert "learning-rate" in run["parameters"]
        assert {"train_loss", "val_loss", "val_accuracy"} <= set(run["metrics"])

    # The console ends with the leaderboard and where the report is.
    assert "validation:loss (Minimize)" in console
    assert diverging in console and "divergence" in console
    assert console.rstrip().endswith("report.html")
