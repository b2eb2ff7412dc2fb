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
        "config": {
            "sagemaker_provider": {
                "description": "Settings of airflow-sm-provider's operators, sensor and trigger.",
                "options": {
                    "min_first_poll_seconds": {
                        "description": "Shortest time between a task deferring and its trigger's "
                        "first poll: long enough for the scheduler to process the worker's exit "
                        "from the deferring run before the trigger can fire (Airflow's defer race). "
                        "0 turns the guard off (dag.test() and the local engine's demo).",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "2",
                        "default": "10",
                    },
                    "event_queue_url": {
                        "description": "SQS queue that an EventBridge rule fills with SageMaker's "
                        "job-end events (airflow-sm events setup). Set, every deferred wait of this "
                        "deployment wakes on its job's end event, confirmed with one Describe, and "
                        "polls only every event_safety_poll_seconds; empty, waits poll with backoff.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "https://sqs.eu-west-1.amazonaws.com/123456789012/sagemaker-job-ends",
                        "default": "",
                    },
                    "event_safety_poll_seconds": {
                        "description": "With event_queue_url: seconds between the batched polls "
                        "that catch a lost event.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": None,
                        "default": "600",
                    },
                },
            }
        },
        "extra-links": [
            "airflow_sm_provider.links.TrainingJobLink",
            "airflow_sm_provider.links.ProcessingJobLink",
            "airflow_sm_provider.links.TrackedRunLink",
            "airflow_sm_provider.links.ComparisonReportLink",
        ],
    }
