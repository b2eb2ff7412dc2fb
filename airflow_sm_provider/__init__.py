"""Apache Airflow provider for Amazon SageMaker Processing and Training jobs."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-sm-provider",
        "name": "SageMaker jobs (airflow-sm-provider)",
        "description": "Processing and Training jobs with idempotent retries, batched deferrable "
        "waits, and a local SageMaker engine.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Amazon SageMaker (airflow-sm-provider)",
                "external-doc-url": "https://docs.aws.amazon.com/sagemaker/",
                "tags": ["aws"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Amazon SageMaker (airflow-sm-provider)",
                "python-modules": ["airflow_sm_provider.hooks.jobs", "airflow_sm_provider.hooks.metrics"],
            }
        ],
        "operators": [
            {
                "integration-name": "Amazon SageMaker (airflow-sm-provider)",
                "python-modules": [
                    "airflow_sm_provider.operators.jobs",
                    "airflow_sm_provider.operators.plots",
                    "airflow_sm_provider.operators.report",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Amazon SageMaker (airflow-sm-provider)",
                "python-modules": ["airflow_sm_provider.sensors.jobs"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Amazon SageMaker (airflow-sm-provider)",
                "python-modules": ["airflow_sm_provider.triggers.jobs"],
            }
        ],
        "notifications": ["airflow_sm_provider.notifications.notifier.SageMakerJobsNotifier"],
        "extra-links": [
            "airflow_sm_provider.links.TrainingJobLink",
            "airflow_sm_provider.links.ProcessingJobLink",
            "airflow_sm_provider.links.TrackedRunLink",
            "airflow_sm_provider.links.ComparisonReportLink",
        ],
    }
