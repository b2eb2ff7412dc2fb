"""
### SageMaker training pipeline (template)

Preprocess data with a **Processing job**, train one **Training job per candidate
learning rate**, and wait for all candidates with **one deferred sensor**:

```
stage_code -> plan_processing -> preprocess -> wait_preprocess
           -> plan_training -> train (mapped, one per learning rate) -> wait_training
```

Trigger it from the UI with parameters (bucket, role, image, candidates, epochs, runtime
limits) or let it run on its schedule (weekly: set the parameters' defaults for your account
before unpausing). Against the local engine (`airflow-sm local up`, then point the
`aws_default` connection or `AWS_ENDPOINT_URL` at it) every job really runs on this machine;
against AWS the same DAG runs real SageMaker jobs.

Job names are the names in the configs plus a hash of the task's identity, so a retried
task re-attaches to its job instead of launching a second one. `stage_code` -> `plan_*`
build the job configs in the SageMaker API's own shape; the job scripts live in
`sagemaker_scripts/` next to this file.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_sm_provider.operators.jobs import ProcessingJobOperator, TrainingJobOperator
from airflow_sm_provider.sensors.jobs import JobSensor

SCRIPTS_DIR = Path(__file__).parent / "sagemaker_scripts"
AWS_CONN_ID = "aws_default"
METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": r"train_loss=([0-9.eE+-]+)"},
    {"Name": "validation:loss", "Regex": r"val_loss=([0-9.eE+-]+)"},
    {"Name": "validation:accuracy", "Regex": r"val_accuracy=([0-9.eE+-]+)"},
]

CHANNELS = ("train", "validation")
# First delay between status polls of the sensors (they back off from there). A minute suits
# jobs of minutes to days; the local demo sets a few seconds.
POLL_SECONDS = float(os.environ.get("SAGEMAKER_PIPELINE_POLL_SECONDS", "60"))
# The jobs' tasks and waits retry: a retried operator re-attaches to its job (job names derive
# from the task's identity, so no second job starts), and a wait failed by Airflow's defer race
# (see the README) recovers on its next try.
RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=30)}


def run_uri(params: dict, run_id: str | None, suffix: str) -> str:
    """S3 URI under this DAG run's own prefix (run ids hold ':' and '+', kept out of keys)."""
    run_key = re.sub(r"[^A-Za-z0-9_.-]", "-", run_id or "manual")
    return f"s3://{params['bucket']}/{params['prefix']}/runs/{run_key}/{suffix}"


def resources(params: dict) -> dict:
    return {"InstanceCount": 1, "InstanceType": params["instance_type"], "VolumeSizeInGB": 10}


with DAG(
    dag_id="sagemaker_training_pipeline",
    description="Processing job -> candidate Training jobs -> one deferred sensor",
    doc_md=__doc__,
    schedule="@weekly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["sagemaker", "template"],
    params={
        "bucket": Param(
            "airflow-sm-demo",
            type="string",
            pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
            description="S3 bucket for code, data and model artifacts (must exist).",
        ),
        "prefix": Param(
            "digits-demo",
            type="string",
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$",
            description="Key prefix under the bucket for this pipeline.",
        ),
        "role_arn": Param(
            "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
            type="string",
            pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$",
            description="IAM role the jobs run as.",
        ),
        "image_uri": Param(
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
            type="string",
            description="Container image for both jobs (the local engine runs any image with its Python).",
        ),
        "instance_type": Param("ml.m5.large", type="string", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$"),
        "learning_rates": Param(
            [0.1, 0.5],
            type="array",
            items={"type": "number", "exclusiveMinimum": 0},
            minItems=1,
            maxItems=20,
            description="One training job per learning rate.",
        ),
        "epochs": Param(12, type="integer", minimum=1, maximum=1000),
        "processing_max_runtime_seconds": Param(
            3600,
            type="integer",
            minimum=60,
            maximum=777_600,
            description="StoppingCondition of the processing job (SageMaker allows up to 9 days).",
        ),
        "training_max_runtime_seconds": Param(
            3600,
            type="integer",
            minimum=60,
            maximum=2_419_200,
            description="StoppingCondition of each training job (SageMaker allows up to 28 days).",
        ),
    },
) as dag:

    @task
    def stage_code(params: dict | None = None) -> dict[str, str]:
        """Upload the job scripts from the DAGs folder to S3, keyed by their content hash."""
        from airflow_sm_provider.hooks.code import CodeStager

        stager = CodeStager(params["bucket"], f"{params['prefix']}/code", aws_conn_id=AWS_CONN_ID)
        return {
            "preprocess": stager.script(SCRIPTS_DIR / "preprocess.py"),
            "train": stager.source_dir(SCRIPTS_DIR),
        }

    @task
    def plan_processing(code: dict[str, str], params: dict | None = None, run_id: str | None = None) -> dict:
        """The CreateProcessingJob request of this run, in the SageMaker API's own shape."""
        return {
            "ProcessingJobName": "digits-preprocess",
            "RoleArn": params["role_arn"],
            "AppSpecification": {
                "ImageUri": params["image_uri"],
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
            "ProcessingResources": {"ClusterConfig": resources(params)},
            "StoppingCondition": {"MaxRuntimeInSeconds": params["processing_max_runtime_seconds"]},
        }

    @task
    def plan_training(
        code: dict[str, str], params: dict | None = None, run_id: str | None = None
    ) -> list[dict]:
        """One CreateTrainingJob request per candidate learning rate."""
        return [
            {
                "TrainingJobName": f"digits-lr{index}",
                "RoleArn": params["role_arn"],
                "AlgorithmSpecification": {
                    "TrainingImage": params["image_uri"],
                    "TrainingInputMode": "File",
                    "MetricDefinitions": METRIC_DEFINITIONS,
                },
                "HyperParameters": {
                    "sagemaker_program": "train.py",
                    "sagemaker_submit_directory": code["train"],
                    "learning-rate": str(rate),
                    "epochs": str(params["epochs"]),
                },
                "InputDataConfig": [
                    {
                        "ChannelName": channel,
                        "DataSource": {
                            "S3DataSource": {
                                "S3DataType": "S3Prefix",
                                "S3Uri": run_uri(params, run_id, f"data/{channel}"),
                                "S3DataDistributionType": "FullyReplicated",
                            }
                        },
                        "ContentType": "text/csv",
                    }
                    for channel in CHANNELS
                ],
                "OutputDataConfig": {"S3OutputPath": run_uri(params, run_id, "models")},
                "ResourceConfig": resources(params),
                "StoppingCondition": {"MaxRuntimeInSeconds": params["training_max_runtime_seconds"]},
            }
            for index, rate in enumerate(params["learning_rates"])
        ]

    code = stage_code()

    preprocess = ProcessingJobOperator(
        task_id="preprocess",
        config=plan_processing(code),
        aws_conn_id=AWS_CONN_ID,
        wait_for_completion=False,
        **RETRIES,
    )
    wait_preprocess = JobSensor(
        task_id="wait_preprocess",
        jobs=preprocess.output,
        aws_conn_id=AWS_CONN_ID,
        poke_interval=POLL_SECONDS,
        **RETRIES,
    )
    train = TrainingJobOperator.partial(
        task_id="train",
        aws_conn_id=AWS_CONN_ID,
        wait_for_completion=False,
        **RETRIES,
    ).expand(config=plan_training(code))
    wait_training = JobSensor(
        task_id="wait_training",
        jobs=train.output,
        aws_conn_id=AWS_CONN_ID,
        poke_interval=POLL_SECONDS,
        **RETRIES,
    )

    preprocess >> wait_preprocess >> train >> wait_training
