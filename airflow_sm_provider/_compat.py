"""The one place that knows Airflow 3.x (task SDK) from Airflow 2.11 import paths.

Everything else in the package imports Airflow names from here. Only cheap names live at
module level: DAG files import our operators at parse time.
"""

from __future__ import annotations

import configparser
import os

try:  # Airflow 3.x: the task SDK is the public surface for authoring.
    from airflow.sdk import BaseOperator, BaseOperatorLink, BaseSensorOperator, Context, conf
    from airflow.sdk.exceptions import AirflowException

    AIRFLOW_V3 = True
except ImportError:  # Airflow 2.11
    from airflow.configuration import conf  # type: ignore[no-redef]
    from airflow.exceptions import AirflowException  # type: ignore[no-redef]
    from airflow.models import BaseOperator  # type: ignore[no-redef]
    from airflow.models.baseoperatorlink import BaseOperatorLink  # type: ignore[no-redef]
    from airflow.sensors.base import BaseSensorOperator  # type: ignore[no-redef]
    from airflow.utils.context import Context  # type: ignore[no-redef]

    AIRFLOW_V3 = False

from airflow.triggers.base import BaseTrigger, TriggerEvent

__all__ = [
    "AIRFLOW_V3",
    "AirflowException",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "TriggerEvent",
    "conf",
    "default_deferrable",
    "load_dag_bag",
]


def default_deferrable() -> bool:
    """Whether operators defer by default.

    An explicit ``[operators] default_deferrable`` (environment or airflow.cfg) wins; when
    the deployment has not set it, we defer: waiting on SageMaker jobs that run for hours
    should not hold a worker slot. (Airflow's built-in default for the option is False,
    so ``conf.getboolean(..., fallback=True)`` alone would never fall back.)
    """
    if "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE" in os.environ or configparser.ConfigParser.has_option(
        conf, "operators", "default_deferrable"
    ):
        return conf.getboolean("operators", "default_deferrable")
    return True


def load_dag_bag(dag_folder: str) -> object:
    """Parse the DAG files of a folder (a DagBag); imported on call, being heavy."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.11
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag(dag_folder=dag_folder)
