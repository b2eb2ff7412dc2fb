"""The template DAG's pipeline written with the Amazon provider's SageMaker operators.

Only for the DAG-parse benchmark (``benchmarks/dag_parse.py``): the same shape as
``dags/sagemaker_training_pipeline.py`` (stage code, preprocess, one training job per
candidate, curves, report) with ``SageMakerProcessingOperator`` and a mapped
``SageMakerTrainingOperator`` (deferrable), the steps the Amazon provider has no operator for
as ``@task`` functions importing their libraries inside, as a careful author would write them.
It is parsed, not run.
"""

from __future__ import annotations

import itertools
from datetime import datetime

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerProcessingOperator,
    SageMakerTrainingOperator,
)
from airflow.providers.common.compat.sdk import DAG, Param, task

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sklearn:latest"
RESOURCES = {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10}

with DAG(
    dag_id="amazon_sagemaker_pipeline",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "bucket": Param("my-bucket", type="string"),
        "grid": Param({"learning-rate": [0.03, 0.3]}, type="object"),
        "epochs": Param(30, type="integer", minimum=1),
    },
):

    @task
    def stage_code(params: dict | None = None) -> str:
        import boto3  # at run time only

        key = "code/sourcedir.tar.gz"
        boto3.client("s3").upload_file("sagemaker_scripts.tar.gz", params["bucket"], key)
        return f"s3://{params['bucket']}/{key}"

    @task
    def plan_training(code: str, params: dict | None = None, run_id: str | None = None) -> list[dict]:
        grid = params["grid"]
        return [
            {
                "TrainingJobName": f"train-{i}-{abs(hash(run_id)) % 10**8}",
                "RoleArn": ROLE,
                "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
                "HyperParameters": {
                    **{k: str(v) for k, v in zip(grid, values, strict=True)},
                    "epochs": str(params["epochs"]),
                    "sagemaker_program": "train.py",
                    "sagemaker_submit_directory": code,
                },
                "OutputDataConfig": {"S3OutputPath": f"s3://{params['bucket']}/models"},
                "ResourceConfig": RESOURCES,
                "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
            }
            for i, values in enumerate(itertools.product(*grid.values()))
        ]

    @task
    def learning_curves(trained: list[dict]) -> None:
        import matplotlib  # at run time only

        matplotlib.use("Agg")

    @task(trigger_rule="all_done")
    def report(trained: list[dict] | None) -> None:
        import pandas  # at run time only

        pandas.DataFrame(trained or [])

    code = stage_code()
    preprocess = SageMakerProcessingOperator(
        task_id="preprocess",
        config={
            "ProcessingJobName": "preprocess-{{ ts_nodash }}",
            "RoleArn": ROLE,
            "AppSpecification": {"ImageUri": IMAGE, "ContainerEntrypoint": ["python3", "preprocess.py"]},
            "ProcessingResources": {"ClusterConfig": RESOURCES},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
        deferrable=True,
    )
    train = SageMakerTrainingOperator.partial(task_id="train", deferrable=True).expand(
        config=plan_training(code)
    )
    code >> preprocess >> train
    learning_curves(train.output) >> report(train.output)
