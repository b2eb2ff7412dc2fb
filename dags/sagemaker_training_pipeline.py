"""
### SageMaker training sweep (template)

Preprocess a dataset with a **Processing job**, train **one Training job per candidate** of a
hyperparameter grid (each tracked as a **SageMaker Experiments Run**, or an **MLflow run** with
`tracking_backend` = `mlflow`), wait for all of them with
**one deferred sensor**, publish **per-epoch learning curves** to S3 while they train, and write
a **comparison report** (leaderboard, curves, parameter effects, health flags) to S3:

```
stage_code -> plan_processing -> preprocess -> wait_preprocess
  -> plan_training -> train (mapped: one job per candidate, tracked)
  -> wait_training (one deferred, batched wait)  +  learning_curves (republished while jobs run)
  -> report (runs even when jobs failed) -> outcome (fails the run if a job failed)
```

**Trigger it from the UI** ("Trigger DAG" with the form): every parameter below has a form
field. The grid is JSON: `{"learning-rate": [0.03, 0.3], "hidden-units": [32, 64]}` gives four
candidates (the product of the lists). **On a schedule** (weekly) it runs with the defaults:
set them for your account (bucket, role, images) before unpausing.

**Where the results are**: the report at
`s3://{bucket}/{prefix}/reports/sagemaker_training_pipeline/{run_id}/report.html` (the report
task's extra link opens it), the charts at `s3://{bucket}/{prefix}/{job}/metrics/{metric}.png`
and `s3://{bucket}/{prefix}/plots/...`, the models at `s3://{bucket}/{prefix}/runs/{run_id}/models/`,
and the runs in the experiment (SageMaker Studio, or MLflow's UI) named by `experiment`.

**A failed job** is reported with its reason; the final `outcome` task then fails the DAG run,
unless `allow_partial_failure` is on. **Notifications** (opt-in): set `notify_sns_topic_arn`
and/or `notify_slack_conn_id` and every failed job, with its reason and console link, is sent
there when a job or wait task fails. Job names are the readable names below plus a hash of the
task's identity, so a retried task re-attaches to its job instead of starting a second one.

**Against the local engine** (`airflow-sm local up`, then point the `aws_default` connection's
`endpoint_url` at it) every job really runs on your machine. Two environment variables of the
DAG files shorten the waits for such quick jobs: `SAGEMAKER_PIPELINE_POLL_SECONDS` (first
status poll, default 60) and `SAGEMAKER_PIPELINE_REPLOT_SECONDS` (live chart refresh, default 300).
"""

from __future__ import annotations

import itertools
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_sm_provider.operators.jobs import ProcessingJobOperator, TrainingJobOperator
from airflow_sm_provider.operators.plots import MetricPlotOperator
from airflow_sm_provider.operators.report import ComparisonReportOperator
from airflow_sm_provider.sensors.jobs import JobSensor
from airflow_sm_provider.template_jobs import (
    AWS,
    CHANNELS,
    DEFAULT_IMAGE,
    RETRIES,
    S3_PLACE,
    failure_notifications,
    poll_seconds,
    resources,
    run_uri,
    stage_code,
    training_params,
    training_request,
)

DAG_ID = "sagemaker_training_pipeline"
SCRIPTS_DIR = Path(__file__).parent / "sagemaker_scripts"
MAX_CANDIDATES = 50
PROCESSING_MAX_RUNTIME_SECONDS = 777_600  # SageMaker's limit for processing jobs (9 days)
# How often the learning curves are redrawn while jobs train.
REPLOT_EVERY = timedelta(seconds=float(os.environ.get("SAGEMAKER_PIPELINE_REPLOT_SECONDS", "300")))
# Opt-in failure notifications of the job and wait tasks (Params notify_*).
NOTIFY = failure_notifications()


def candidates(grid: dict[str, list]) -> list[dict[str, str]]:
    """Every combination of the grid's values, in a stable order; hyperparameters are strings."""
    if not grid:
        raise ValueError("grid: needs at least one hyperparameter with a list of values")
    names = sorted(grid)
    for name in names:
        if not isinstance(grid[name], list) or not grid[name]:
            raise ValueError(f"grid[{name!r}]: must be a non-empty list of values")
    combos = [
        dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))
    ]
    if len(combos) > MAX_CANDIDATES:
        raise ValueError(f"grid: {len(combos)} candidates; at most {MAX_CANDIDATES} per run")
    return [{name: str(value) for name, value in combo.items()} for combo in combos]


with DAG(
    dag_id=DAG_ID,
    description="Processing -> tracked training sweep -> one deferred wait -> live curves -> report",
    doc_md=__doc__,
    schedule="@weekly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["sagemaker", "template", "experiments"],
    params=training_params(
        {
            "tracking_backend": Param(
                "experiments",
                type="string",
                enum=["experiments", "mlflow"],
                title="Tracking backend",
                description="Where the runs are tracked: SageMaker Experiments, or MLflow (see below).",
            ),
            "mlflow_tracking_uri": Param(
                "",
                type="string",
                maxLength=2048,
                title="MLflow tracking URI",
                description=(
                    "With the mlflow backend: a tracking server URL, or a SageMaker MLflow tracking "
                    "server / MLflow App ARN; empty for the workers' MLFLOW_TRACKING_URI."
                ),
            ),
            "processing_image": Param(
                DEFAULT_IMAGE,
                type="string",
                title="Processing image",
                description="Image of the processing job (Python 3.9 in this default).",
            ),
            "grid": Param(
                {"learning-rate": [0.03, 0.3], "hidden-units": [32]},
                type="object",
                additionalProperties={
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": ["number", "string"]},
                },
                minProperties=1,
                title="Hyperparameter grid",
                description="One training job per combination: {name: [values]}, at most 50 combinations.",
            ),
            "epochs": Param(
                30,
                type="integer",
                minimum=1,
                maximum=1000,
                title="Epochs",
                description="Epochs per candidate.",
            ),
            "allow_partial_failure": Param(
                False,
                type="boolean",
                title="Allow partial failure",
                description="When on, the DAG run succeeds if at least one candidate completed.",
            ),
        }
    ),
) as dag:

    @task(task_id="stage_code")
    def stage(params: dict | None = None) -> dict[str, str]:
        """Upload the job scripts from the DAGs folder to S3, keyed by their content hash."""
        return stage_code(params, SCRIPTS_DIR)

    @task
    def plan_processing(code: dict[str, str], params: dict | None = None, run_id: str | None = None) -> dict:
        """The CreateProcessingJob request of this run, in the SageMaker API's own shape."""
        return {
            "ProcessingJobName": "digits-preprocess",
            "RoleArn": params["role_arn"],
            "AppSpecification": {
                "ImageUri": params["processing_image"],
                "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/preprocess.py"],
                "ContainerArguments": ["--output-dir", "/opt/ml/processing/output"],
            },
            "ProcessingInputs": [
                {
                    "InputName": "code",
                    "S3Input": {
                        "S3Uri": code["preprocess"],
                        "LocalPath": "/opt/ml/processing/input/code",
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                    },
                }
            ],
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": channel,
                        "S3Output": {
                            "S3Uri": run_uri(params, run_id, f"data/{channel}"),
                            "LocalPath": f"/opt/ml/processing/output/{channel}",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                    for channel in CHANNELS
                ]
            },
            "ProcessingResources": {"ClusterConfig": {**resources(params), "InstanceCount": 1}},
            "StoppingCondition": {
                "MaxRuntimeInSeconds": min(params["max_runtime_seconds"], PROCESSING_MAX_RUNTIME_SECONDS)
            },
        }

    @task
    def plan_training(
        code: dict[str, str], params: dict | None = None, run_id: str | None = None
    ) -> list[dict]:
        """One CreateTrainingJob request per candidate of the grid (``digits-c01``, ``digits-c02``, ...)."""
        return [
            training_request(
                f"digits-c{number:02d}",
                params,
                code=code["train"],
                hyperparameters={"epochs": str(params["epochs"]), **hyperparameters},
                channels={channel: run_uri(params, run_id, f"data/{channel}") for channel in CHANNELS},
                output_uri=run_uri(params, run_id, "models"),
                checkpoint_uri=run_uri(params, run_id, f"checkpoints/c{number:02d}"),
            )
            for number, hyperparameters in enumerate(candidates(params["grid"]), start=1)
        ]

    @task(trigger_rule="all_done")
    def outcome(report: dict | None, params: dict | None = None) -> None:
        """Fail the DAG run when a candidate failed (the report is written first, whatever happened)."""
        from airflow_sm_provider._compat import AirflowFailException

        if not report:
            raise AirflowFailException("the comparison report was not written: see the report task's log")
        if report["failed"] and not (params["allow_partial_failure"] and report["ranked"]):
            raise AirflowFailException(
                f"{report['failed']} candidate(s) failed or stopped; reasons in {report['report']}"
            )

    code = stage()
    preprocess = ProcessingJobOperator(
        task_id="preprocess",
        config=plan_processing(code),
        wait_for_completion=False,
        **AWS,
        **RETRIES,
        **NOTIFY,
    )
    wait_preprocess = JobSensor(
        task_id="wait_preprocess",
        jobs=preprocess.output,
        poke_interval=poll_seconds(),
        **AWS,
        **RETRIES,
        **NOTIFY,
    )
    train = TrainingJobOperator.partial(
        task_id="train",
        experiment="{{ params.experiment }}",
        tracking_backend="{{ params.tracking_backend }}",
        tracking_uri="{{ params.mlflow_tracking_uri }}",
        wait_for_completion=False,
        **AWS,
        **RETRIES,
        **NOTIFY,
    ).expand(config=plan_training(code))
    wait_training = JobSensor(
        task_id="wait_training", jobs=train.output, poke_interval=poll_seconds(), **AWS, **RETRIES, **NOTIFY
    )
    learning_curves = MetricPlotOperator(
        task_id="learning_curves",
        jobs=train.output,
        live=True,
        republish_every=REPLOT_EVERY,
        trigger_rule="all_done",
        **S3_PLACE,
        **AWS,
    )
    report = ComparisonReportOperator(
        task_id="report",
        jobs=train.output,
        objective_metric="{{ params.objective_metric }}",
        objective_direction="{{ params.objective_direction }}",
        **S3_PLACE,
        **AWS,
    )

    preprocess >> wait_preprocess >> train
    [wait_training, learning_curves] >> report
    outcome(report.output)
