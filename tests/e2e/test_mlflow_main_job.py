"""The template sweep tracked in MLflow, end to end on the local engine (slow: two sweeps).

Run on demand: ``python -m pytest -m slow tests/e2e/test_mlflow_main_job.py`` (needs the
``mlflow-server`` extra). Every run is read back with MLflow's own client; the report ranks
the same candidates with the same numbers as the sweep tracked in SageMaker Experiments.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
EPOCHS = 12


def _leaderboard(report: dict) -> list[tuple]:
    """What a person compares: rank, hyperparameters and final metrics (not the names or links)."""
    return [
        (run["rank"], sorted(run["hyperparameters"].items()), sorted(run.get("final_metrics", {}).items()))
        for run in report["runs"]
    ]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(3600)  # two template sweeps
def test_the_template_sweep_tracked_in_mlflow_reports_as_in_experiments(tmp_path: Path) -> None:
    pytest.importorskip("mlflow.server", reason="needs the mlflow-server extra")
    from mlflow.tracking import MlflowClient

    from airflow_sm_provider.demo import run_demo
    from airflow_sm_provider.local.mlflow_server import MlflowServer

    with MlflowServer(tmp_path / "mlflow") as server:
        conf = {
            "epochs": EPOCHS,
            "experiment": "mlflow-e2e",
            "tracking_backend": "mlflow",
            "mlflow_tracking_uri": server.url,
        }
        artifacts = tmp_path / "mlflow-run"
        assert run_demo(artifacts, DAGS_FOLDER, conf) == 0, (artifacts / "dag-test.log").read_text()[-3000:]
        client = MlflowClient(server.url)
        experiment = client.get_experiment_by_name("mlflow-e2e")
        runs = client.search_runs([experiment.experiment_id], "tags.`airflow-sm:task-id` = 'train'")
        assert len(runs) == 3
        for run in runs:
            assert run.info.status == "FINISHED" and "learning-rate" in run.data.params
            diverging = float(run.data.params["learning-rate"]) >= 10  # its NaN epochs are not logged
            for metric in ("train_loss", "val_loss", "val_accuracy"):
                steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
                assert steps == list(range(1, EPOCHS + 1)) or (diverging and metric != "val_accuracy"), steps
            plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
            assert "plots/curve-validation-loss.png" in plots, plots
        by_mlflow = json.loads((artifacts / "report.json").read_text())
        tracked = json.loads((artifacts / "experiments.json").read_text())  # the tracker's lookup
        assert sorted(run["ref"]["record"] for run in tracked) == sorted(r.info.run_id for r in runs)

    experiments = tmp_path / "experiments-run"
    assert run_demo(experiments, DAGS_FOLDER, {"epochs": EPOCHS}) == 0
    by_experiments = json.loads((experiments / "report.json").read_text())
    assert _leaderboard(by_mlflow) == _leaderboard(by_experiments)
    assert len(by_mlflow["health"]) == len(by_experiments["health"])
