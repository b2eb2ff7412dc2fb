"""``ReportLink``: from a task to its DAG run's comparison report in the Airflow UI.

The link opens the report viewer's tab of the DAG run (the plugin's external view, so the
report shows inside the Airflow UI, behind its login). It needs nothing from XCom: the DAG
and run ids of the task instance are the whole address. Cheap to import (DAG-parse time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_sm_provider._compat import BaseOperatorLink

if TYPE_CHECKING:
    from airflow_sm_provider._compat import BaseOperator

URL_PREFIX = "/sagemaker-reports"  # where the API server mounts the viewer's app
RUN_VIEW_ROUTE = "sagemaker-report"  # the UI route of the DAG run tab
DAG_VIEW_ROUTE = "sagemaker-reports"  # the UI route of the DAG tab


def ui_base() -> str:
    """The UI's base path from ``[api] base_url`` ("/" when Airflow is served at the root)."""
    from urllib.parse import urlsplit

    from airflow_sm_provider._compat import conf

    path = urlsplit(conf.get("api", "base_url", fallback="") or "").path
    return path if path.endswith("/") else path + "/"


def report_tab_url(dag_id: str, run_id: str) -> str:
    """The Airflow UI page of a DAG run's report tab."""
    return f"{ui_base()}dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/plugin/{RUN_VIEW_ROUTE}"


class ReportLink(BaseOperatorLink):
    """The DAG run's comparison report, in the report viewer tab of the Airflow UI."""

    name = "Comparison report"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        return report_tab_url(ti_key.dag_id, ti_key.run_id)
