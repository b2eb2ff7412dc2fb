"""The Airflow plugin of the report viewer: its FastAPI app and the UI tabs that frame it.

On Airflow 3 the API server mounts the viewer at :data:`~airflow_sm_provider.ui.links.URL_PREFIX`
and the UI shows two tabs: "SageMaker reports" on each DAG (the list) and "SageMaker report"
on each DAG run (the run's ``report.html``); the UI fills ``{DAG_ID}`` / ``{RUN_ID}`` into
their ``href`` and frames them. The app itself is built on its first request: every Airflow
process loads plugins (workers too), and only the API server serves them.

On Airflow 2.11 there is no FastAPI server to mount on: the plugin registers nothing and
says so in one log line.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_sm_provider._compat import AIRFLOW_V3
from airflow_sm_provider.ui.links import DAG_VIEW_ROUTE, RUN_VIEW_ROUTE, URL_PREFIX, ui_base

log = logging.getLogger(__name__)


class LazyApp:
    """An ASGI app that builds the viewer (FastAPI, Airflow's security module) on first use."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_sm_provider.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


def report_views() -> list[dict[str, Any]]:
    """The UI tabs; their ``href`` carries ``[api] base_url``'s path, as the iframe needs."""
    base = f"{ui_base()}{URL_PREFIX.strip('/')}"
    return [
        {
            "name": "SageMaker reports",
            "href": f"{base}/dags/{{DAG_ID}}",
            "destination": "dag",
            "url_route": DAG_VIEW_ROUTE,
        },
        {
            "name": "SageMaker report",
            "href": f"{base}/dags/{{DAG_ID}}/runs/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": RUN_VIEW_ROUTE,
        },
    ]


class SageMakerReportsPlugin(AirflowPlugin):
    """Comparison reports of SageMaker sweeps, read from S3, behind Airflow's own authorization."""

    name = "sagemaker_reports"
    if AIRFLOW_V3:
        fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "SageMaker reports"}]
        external_views = report_views()
    else:
        log.info("sagemaker_reports plugin: Airflow 2 has no FastAPI API server; the report viewer is off")
