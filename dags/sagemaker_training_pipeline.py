"""
### SageMaker training pipeline (template)

Preprocess data with a **Processing job**, train one **Training job per candidate
learning rate**, and wait for all of them with **one deferred sensor**:

```
stage_code -> plan -> preprocess -> wait_preprocess -> train (mapped) -> wait_training
```

Trigger it from the UI with parameters (bucket, role, image, candidates, epochs) or let it
run on its schedule. Against the local engine (`airflow-sm local up`, then point the
`aws_default` connection or `AWS_ENDPOINT_URL` at it) every job really runs on this machine;
against AWS the same DAG runs real SageMaker jobs.

Job names are derived from the names below plus a hash of the task's identity, so a retried
task re-attaches to its job instead of launching a second one.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param, task

from airflow_sm_provider.operators.jobs import ProcessingJobOperator, TrainingJobOperator
from airflow_sm_provider.sensors.jobs import JobSensor

SCRIPTS_DIR = Path(__file__).parent / "sagemaker_scripts"
AWS_CONN_ID = "aws_default"
METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": r"train_loss=([0-9.eE+-]+)"},
    {"Name": "validation:loss", "Regex": r"val_loss=([0-9.eE+-]+)"},
    {"Name": "validation:accuracy", "Regex": r"val_accuracy=([0-9.eE+-]+)"},
]

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
        "max_runtime_seconds": Param(3600, type="integer", minimum=60, maximum=2_419_200),
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

    @task(multiple_outputs=True)
    def plan(code: dict[str, str], params: dict | None = None, run_id: str | None = None) -> dict:
        """The job configs of this run, in the SageMaker API's own shape."""
        run_key = re.sub(r"[^A-Za-z0-9_.-]", "-", run_id or "manual")
        base = f"s3://{params['bucket']}/{params['prefix']}/runs/{run_key}"
        resources = {"InstanceCount": 1, "InstanceType": params["instance_type"], "VolumeSizeInGB": 10}
        processing = {
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
                        "OutputName": name,
                        "S3Output": {
                            "S3Uri": f"{base}/data/{name}",
                            "LocalPath": f"/opt/ml/processing/output/{name}",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                    for name in ("train", "validation")
                ]
            },
            "ProcessingResources": {"ClusterConfig": resources},
            "StoppingCondition": {"MaxRuntimeInSeconds": params["max_runtime_seconds"]},
        }
        training = [
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
                        "ChannelName": name,
                        "DataSource": {
                            "S3DataSource": {
                                "S3DataType": "S3Prefix",
                                "S3Uri": f"{base}/data/{name}",
                                "S3DataDistributionType": "FullyReplicated",
                            }
                        },
                        "ContentType": "text/csv",
                    }
                    for name in ("train", "validation")
                ],
                "OutputDataConfig": {"S3OutputPath": f"{base}/models"},
                "ResourceConfig": resources,
                "StoppingCondition": {"MaxRuntimeInSeconds": params["max_runtime_seconds"]},
            }
            for index, rate in enumerate(params["learning_rates"])
        ]
        return {"processing": processing, "training": training}

    configs = plan(stage_code())

    preprocess = ProcessingJobOperator(
        task_id="preprocess",
        config=configs["processing"],
        aws_conn_id=AWS_CONN_ID,
        wait_for_completion=False,
    )
    wait_preprocess = JobSensor(task_id="wait_preprocess", jobs=preprocess.output, aws_conn_id=AWS_CONN_ID)
    train = TrainingJobOperator.partial(
        task_id="train",
        aws_conn_id=AWS_CONN_ID,
        wait_for_completion=False,
    ).expand(config=configs["training"])
    wait_training = JobSensor(task_id="wait_training", jobs=train.output, aws_conn_id=AWS_CONN_ID)

    preprocess >> wait_preprocess >> train >> wait_training
