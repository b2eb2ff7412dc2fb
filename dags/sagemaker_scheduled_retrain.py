"""
### SageMaker scheduled retrain: champion vs challenger (template)

Retrain the **best configuration** of an experiment on a schedule and keep whichever model is
better: the new run (the **challenger**) or the experiment's current **champion**.

```
find_best -> stage_code -> plan_challenger -> train (tracked) -> wait (deferred)
  -> report (champion vs challenger) -> decide (records the winner; fails the run if the
     challenger failed)
```

1. **find_best** looks up every run of the `experiment` (SageMaker Experiments) and picks the
   best *completed* one by the objective (`objective_metric`, `objective_direction`, the run's
   final value). With no completed run it fails at once, before anything is created: run
   `sagemaker_training_pipeline` first with the same experiment.
2. **train** runs `train.py` again with that run's hyperparameters, tracked as a new run of the
   experiment (job and run named `challenger-…`), on the same data, or on `data_prefix`
   (`train/` and `validation/` under it) when your fresh data lands there.
3. **report** writes the comparison report of the champion and the challenger (the run it
   retrained when there is no champion yet) to
   `s3://{bucket}/{prefix}/reports/sagemaker_scheduled_retrain/{run_id}/report.html`.
4. **decide** applies the rules: a challenger that failed (or has no value of the objective)
   never wins and the champion stays; with no champion yet the challenger becomes champion;
   otherwise the challenger must beat the champion by more than `min_delta` (a tie keeps the
   champion). The winner is written to `s3://{bucket}/{prefix}/champion/{experiment}.json`
   (who, its value, since when, the challenger, the reason, the report) and tagged on its run
   `airflow-sm:champion=true` with `airflow-sm:champion-date`; the loser's tag is flipped to
   `false`. Registering the model (Model Registry) is left to you.

**Notifications** (opt-in, as in the training template): set `notify_sns_topic_arn` and/or
`notify_slack_conn_id` and a failed challenger job, with its reason and console link, is sent
there.

**Schedule**: `@weekly` by default; set the environment variable `SAGEMAKER_RETRAIN_SCHEDULE`
of the DAG files (a cron expression, a preset such as `@daily`, or `none` for manual runs
only). Runs never catch up and run one at a time. The other settings are the Params below,
shared with `sagemaker_training_pipeline` (set their defaults for your account).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG, Param, task

try:
    from airflow.task.trigger_rule import TriggerRule
except ImportError:  # Airflow 2.11
    from airflow.utils.trigger_rule import TriggerRule

from airflow_sm_provider.operators.jobs import TrainingJobOperator
from airflow_sm_provider.operators.report import ComparisonReportOperator
from airflow_sm_provider.sensors.jobs import JobSensor
from airflow_sm_provider.template_jobs import (
    AWS,
    RETRIES,
    S3_PLACE,
    failure_notifications,
    poll_seconds,
    run_uri,
    stage_code,
    training_params,
    training_request,
)

DAG_ID = "sagemaker_scheduled_retrain"
SCRIPTS_DIR = Path(__file__).parent / "sagemaker_scripts"
CHALLENGER = "challenger"
# Opt-in failure notifications of the job and wait tasks (Params notify_*).
NOTIFY = failure_notifications()
# The report and the decision run whether the challenger's job completed or failed, but not
# when find_best found nothing to retrain (then nothing upstream succeeded, and its failure is
# the run's only one). Airflow 2.11 lacks that rule: there they run and fail too.
AFTER_THE_CHALLENGER = (
    TriggerRule.ALL_DONE_MIN_ONE_SUCCESS.value
    if hasattr(TriggerRule, "ALL_DONE_MIN_ONE_SUCCESS")
    else TriggerRule.ALL_DONE.value
)


def schedule_setting(value: str | None) -> str | None:
    """The DAG's schedule from ``SAGEMAKER_RETRAIN_SCHEDULE``: unset is weekly, ``none`` is manual."""
    value = (value or "@weekly").strip()
    return None if value.lower() == "none" else value


def place(params: dict) -> dict:
    """Where the experiment's runs and champion are, for ``airflow_sm_provider.retrain``."""
    from airflow_sm_provider.aws_args import AwsArgs
    from airflow_sm_provider.reporting.model import Objective

    return {
        "aws": AwsArgs(aws_conn_id=params["aws_conn_id"]),
        "bucket": params["bucket"],
        "prefix": params["prefix"],
        "experiment": params["experiment"],
        "objective": Objective(params["objective_metric"], params["objective_direction"]),
    }


with DAG(
    dag_id=DAG_ID,
    description="Retrain the experiment's best configuration; keep the better of champion and challenger",
    doc_md=__doc__,
    schedule=schedule_setting(os.environ.get("SAGEMAKER_RETRAIN_SCHEDULE")),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["sagemaker", "template", "experiments", "retrain"],
    params=training_params(
        {
            "data_prefix": Param(
                "",
                type="string",
                pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?)?$",
                title="Fresh data (S3 prefix)",
                description=(
                    "Train on the train/ and validation/ CSVs under this s3:// prefix; "
                    "empty: on the data of the run whose configuration is retrained."
                ),
            ),
            "min_delta": Param(
                0.0,
                type="number",
                minimum=0,
                title="Margin to win",
                description="The challenger must beat the champion's objective by more than this.",
            ),
        }
    ),
) as dag:

    @task(multiple_outputs=True, **RETRIES)
    def find_best(params: dict | None = None) -> dict:
        """The best completed run of the experiment (what to retrain) and the current champion."""
        from airflow_sm_provider._compat import AirflowFailException
        from airflow_sm_provider.retrain import find_source

        try:
            return find_source(**place(params), data_prefix=params["data_prefix"])
        except ValueError as error:  # nothing to retrain yet, or a bad document: retries cannot help
            raise AirflowFailException(str(error)) from error

    @task(task_id="stage_code")
    def stage(params: dict | None = None) -> dict[str, str]:
        """Upload the job scripts from the DAGs folder to S3, keyed by their content hash."""
        return stage_code(params, SCRIPTS_DIR)

    @task
    def plan_challenger(
        source: dict, code: dict[str, str], params: dict | None = None, run_id: str | None = None
    ) -> dict:
        """The CreateTrainingJob request of the challenger: the source run's hyperparameters."""
        return training_request(
            CHALLENGER,
            params,
            code=code["train"],
            hyperparameters=source["hyperparameters"],
            channels=source["channels"],
            output_uri=run_uri(params, run_id, "models"),
            checkpoint_uri=run_uri(params, run_id, f"checkpoints/{CHALLENGER}"),
        )

    @task(trigger_rule=AFTER_THE_CHALLENGER, **RETRIES)
    def decide(
        source: dict,
        challenger: dict | None,
        report: dict | None,
        params: dict | None = None,
        run_id: str | None = None,
    ) -> dict:
        """Record the winner (document and tags); fail the run when the challenger or report failed."""
        from airflow_sm_provider._compat import AirflowFailException
        from airflow_sm_provider.retrain import record_decision

        try:
            result = record_decision(
                **place(params),
                challenger_job=challenger,
                min_delta=params["min_delta"],
                report=report["report"] if report else None,
                dag_id=DAG_ID,
                run_id=run_id,
            )
        except ValueError as error:
            raise AirflowFailException(str(error)) from error
        if not result["challenger_eligible"]:
            raise AirflowFailException(
                f"the retrain of {source['record']} gave no model to compare: {result['reason']}"
            )
        if not report:
            raise AirflowFailException("the comparison report was not written: see the report task's log")
        return result

    found = find_best()
    code = stage()
    found >> code  # nothing is created before the lookup found something to retrain
    train = TrainingJobOperator(
        task_id="train",
        config=plan_challenger(found["source"], code),
        experiment="{{ params.experiment }}",
        wait_for_completion=False,
        **AWS,
        **RETRIES,
        **NOTIFY,
    )
    wait = JobSensor(
        task_id="wait", jobs=train.output, poke_interval=poll_seconds(), **AWS, **RETRIES, **NOTIFY
    )
    report = ComparisonReportOperator(
        task_id="report",
        jobs=[found["baseline_job"], train.output],
        objective_metric="{{ params.objective_metric }}",
        objective_direction="{{ params.objective_direction }}",
        trigger_rule=AFTER_THE_CHALLENGER,
        **S3_PLACE,
        **AWS,
    )
    wait >> report
    decide(found["source"], train.output, report.output)
