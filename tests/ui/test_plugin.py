"""The plugin's shape as Airflow 3 reads it, the extra link, and the plugins-folder file."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_sm_provider._compat import AIRFLOW_V3
from airflow_sm_provider.ui.links import ReportLink, report_tab_url
from airflow_sm_provider.ui.plugin import LazyApp, SageMakerReportsPlugin
from airflow_sm_provider.ui.standalone import PLUGIN_FILE_TEXT

REPO = Path(__file__).resolve().parents[2]

v3_only = pytest.mark.skipif(not AIRFLOW_V3, reason="external views and FastAPI apps are Airflow 3")


@v3_only
def test_external_views_validate_as_airflow_serves_them() -> None:
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    views = {v["destination"]: ExternalViewResponse(**v) for v in SageMakerReportsPlugin.external_views}
    assert views["dag"].href == "/sagemaker-reports/dags/{DAG_ID}"
    assert views["dag_run"].href == "/sagemaker-reports/dags/{DAG_ID}/runs/{RUN_ID}"
    assert views["dag_run"].url_route == "sagemaker-report"


@v3_only
def test_the_app_is_mounted_under_a_free_prefix_and_built_lazily() -> None:
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES

    (app,) = SageMakerReportsPlugin.fastapi_apps
    assert not any(app["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)
    assert isinstance(app["app"], LazyApp)


def test_report_link_opens_the_run_tab_of_the_ui() -> None:
    key = SimpleNamespace(dag_id="sweep", run_id="manual__2026-01-02T03:04:05+00:00")
    url = ReportLink().get_link(None, ti_key=key)  # type: ignore[arg-type]
    assert url == report_tab_url("sweep", key.run_id)
    assert url.endswith("/dags/sweep/runs/manual__2026-01-02T03%3A04%3A05%2B00%3A00/plugin/sagemaker-report")


def test_the_plugins_folder_file_is_what_airflow_sm_ui_writes() -> None:
    assert (REPO / "plugins" / "sagemaker_reports.py").read_text() == PLUGIN_FILE_TEXT


def test_on_airflow_2_the_plugin_registers_nothing_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import importlib

    import airflow_sm_provider._compat as compat
    import airflow_sm_provider.ui.plugin as plugin

    monkeypatch.setattr(compat, "AIRFLOW_V3", False)
    try:
        with caplog.at_level("INFO", logger=plugin.__name__):
            airflow2 = importlib.reload(plugin).SageMakerReportsPlugin
        assert not getattr(airflow2, "fastapi_apps", []) and not getattr(airflow2, "external_views", [])
        assert [r.message for r in caplog.records if r.name == plugin.__name__] == [
            "sagemaker_reports plugin: Airflow 2 has no FastAPI API server; the report viewer is off"
        ]
    finally:
        monkeypatch.undo()
        importlib.reload(plugin)
