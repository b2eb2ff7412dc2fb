"""The one place that knows Airflow 3.x (task SDK) from Airflow 2.11 import paths.

Everything else in the package imports Airflow names from here. Only cheap names live at
module level: DAG files import our operators at parse time. DAG-authoring names (``DAG``,
``Param``, ``task``), the trigger bases (only the triggerer and a deferring worker need them),
``XCom`` (read when the UI renders a link) and the exceptions tests catch are resolved on first
access instead, through the module ``__getattr__``; ``from airflow_sm_provider._compat import
BaseTrigger`` works the same way.
"""

from __future__ import annotations

import configparser
import importlib
import os
from typing import TYPE_CHECKING, Any

try:  # Airflow 3.x: the task SDK is the public surface for authoring.
    from airflow.sdk import BaseOperator, BaseOperatorLink, BaseSensorOperator, Context, conf
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    AIRFLOW_V3 = True
except ImportError:  # Airflow 2.11
    from airflow.configuration import conf  # type: ignore[no-redef]
    from airflow.exceptions import AirflowException, AirflowFailException  # type: ignore[no-redef]
    from airflow.models import BaseOperator  # type: ignore[no-redef]
    from airflow.models.baseoperatorlink import BaseOperatorLink  # type: ignore[no-redef]
    from airflow.sensors.base import BaseSensorOperator  # type: ignore[no-redef]
    from airflow.utils.context import Context  # type: ignore[no-redef]

    AIRFLOW_V3 = False

if TYPE_CHECKING:  # at run time, ``__getattr__`` below resolves these for the installed Airflow
    from airflow.sdk import DAG, Param, task
    from airflow.sdk.exceptions import ParamValidationError, TaskDeferred
    from airflow.sdk.execution_time.xcom import XCom
    from airflow.triggers.base import BaseTrigger, TriggerEvent

# Resolved on first access: name -> (Airflow 3 module, Airflow 2.11 module).
_LAZY: dict[str, tuple[str, str]] = {
    "DAG": ("airflow.sdk", "airflow.models.dag"),
    "Param": ("airflow.sdk", "airflow.models.param"),
    "ParamValidationError": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "TaskDeferred": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "task": ("airflow.sdk", "airflow.decorators"),
    "BaseTrigger": ("airflow.triggers.base", "airflow.triggers.base"),
    "TriggerEvent": ("airflow.triggers.base", "airflow.triggers.base"),
    "XCom": ("airflow.sdk.execution_time.xcom", "airflow.models.xcom"),
}

__all__ = [
    "AIRFLOW_V3",
    "DAG",
    "AirflowException",
    "AirflowFailException",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "Param",
    "ParamValidationError",
    "TaskDeferred",
    "TriggerEvent",
    "XCom",
    "conf",
    "default_deferrable",
    "load_dag_bag",
    "task",
]


def __getattr__(name: str) -> Any:
    """Import a name of ``_LAZY`` from this Airflow's module for it, once."""
    try:
        modules = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(modules[0 if AIRFLOW_V3 else 1]), name)
    globals()[name] = value
    return value


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
