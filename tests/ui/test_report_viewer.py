"""The report viewer through Airflow's own API server app, with the local engine's S3.

``airflow.api_fastapi.app.create_app`` mounts the plugin's app exactly as the API server does
(``init_plugins``) with a real auth manager and real JWTs. The auth manager is Airflow's simple
one with per-DAG read permissions added (:class:`DagPermissionAuthManager`): the simple one has
roles only and the FAB auth manager is not installed here.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import markupsafe
import pytest

pytest.importorskip("airflow.api_fastapi.app", reason="the report viewer is an Airflow 3 plugin")

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi.testclient import TestClient

from airflow_sm_provider.s3_keys import report_prefix
from airflow_sm_provider.ui.app import report_csp
from airflow_sm_provider.ui.plugin import SageMakerReportsPlugin

PREFIX = "sweeps"
DAG = "sweep"
RUN = "manual__2026-01-02T03:04:05+00:00"
XSS_RUN = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>"
PAYLOAD = "<script>alert('report')</script><img src=x onerror=alert(3)>"
DAGS_BY_USER = {"alice": {DAG}, "bob": {"another_dag"}}


class DagPermissionAuthManager(SimpleAuthManager):
    """Airflow's simple auth manager, plus: a user reads only the DAGs listed for them."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None):
        allowed = super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
        return allowed and details is not None and details.id in DAGS_BY_USER.get(user.username, set())


@pytest.fixture(scope="module")
def api(airflow_db: Any) -> Iterator[tuple[TestClient, Any]]:
    """Airflow's API app with the plugin mounted as ``init_plugins`` mounts it (built once: slow)."""
    from airflow import plugins_manager
    from airflow.api_fastapi import app as api_app

    with pytest.MonkeyPatch.context() as patch:
        mounted = (SageMakerReportsPlugin.fastapi_apps, [])
        patch.setattr(plugins_manager, "get_fastapi_plugins", lambda: mounted)
        patch.setattr(api_app, "get_auth_manager_cls", lambda: DagPermissionAuthManager)
        api_app.purge_cached_app()
        with TestClient(api_app.create_app(apps="core")) as client:
            yield client, api_app.get_auth_manager()
    api_app.purge_cached_app()


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    """A real report whose run name, hyperparameter and failure reason carry markup."""
    from airflow_sm_provider.reporting.model import Objective, RunRecord, build_report
    from airflow_sm_provider.reporting.render import render_artifacts, render_html

    run = RunRecord(name=PAYLOAD, status="Failed", failure_reason=PAYLOAD, hyperparameters={"eta": PAYLOAD})
    report = build_report([run], None, Objective("validation:loss"))
    return {"files": render_artifacts(report, None), "csp": render_html(report).csp}


@pytest.fixture
def viewer(
    api: tuple[TestClient, Any],
    rendered: dict[str, Any],
    aws_env: dict[str, str],
    engine: Any,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[TestClient, Any]:
    """The viewer reading a new bucket that holds two DAG runs' reports and two secrets beside them."""
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__REPORT_BUCKET", s3_bucket)
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__REPORT_PREFIX", PREFIX)
    s3 = engine.client("s3")
    for run_id in (RUN, XSS_RUN):
        folder = report_prefix(PREFIX, DAG, run_id)
        for name, (body, content_type) in rendered["files"].items():
            s3.put_object(Bucket=s3_bucket, Key=folder + name, Body=body, ContentType=content_type)
    s3.put_object(Bucket=s3_bucket, Key="secret/report.html", Body=b"SECRET")
    s3.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/secret.txt", Body=b"SECRET")
    api[0].cookies.clear()
    return api


def _token(auth_manager: Any, username: str) -> str:
    return auth_manager.generate_jwt(SimpleAuthManagerUser(username=username, role="viewer"))


def _bearer(auth_manager: Any, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(auth_manager, username)}"}


def test_lists_reports_of_a_dag_newest_first_with_links(viewer: tuple[TestClient, Any]) -> None:
    client, am = viewer
    response = client.get(f"/sagemaker-reports/dags/{DAG}", headers=_bearer(am, "alice"))
    assert response.status_code == 200
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    assert "script-src" not in response.headers["content-security-policy"]
    body = response.text
    assert html.escape(RUN) in body
    assert "/sagemaker-reports/dags/sweep/runs/manual__2026-01-02T03%3A04%3A05%2B00%3A00" in body
    assert "runs.csv" in body


def test_listing_escapes_run_ids_carrying_markup(viewer: tuple[TestClient, Any]) -> None:
    client, am = viewer
    body = client.get(f"/sagemaker-reports/dags/{DAG}", headers=_bearer(am, "alice")).text
    assert "<script>alert(1)" not in body and "<img src=x" not in body
    assert str(markupsafe.escape(XSS_RUN)) in body


def test_shows_a_report_with_the_cookie_the_ui_sets_and_its_policy(
    viewer: tuple[TestClient, Any], rendered: dict[str, Any]
) -> None:
    client, am = viewer
    client.cookies.set("_token", _token(am, "alice"))  # what the UI's iframe sends
    response = client.get(f"/sagemaker-reports/dags/{DAG}/runs/{RUN}")
    assert response.status_code == 200
    assert response.content == rendered["files"]["report.html"][0]  # as written: escaping intact
    assert PAYLOAD not in response.text and str(markupsafe.escape(PAYLOAD)) in response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == rendered["csp"] == report_csp()
    assert "frame-ancestors 'self'" in rendered["csp"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_serves_the_other_report_files_as_downloads(
    viewer: tuple[TestClient, Any], rendered: dict[str, Any]
) -> None:
    client, am = viewer
    response = client.get(
        f"/sagemaker-reports/dags/{DAG}/runs/{RUN}", params={"file": "runs.csv"}, headers=_bearer(am, "alice")
    )
    assert response.status_code == 200
    assert response.content == rendered["files"]["runs.csv"][0]
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="runs.csv"'


@pytest.mark.parametrize("path", [f"/dags/{DAG}", f"/dags/{DAG}/runs/{RUN}"])
def test_anonymous_requests_are_refused(viewer: tuple[TestClient, Any], path: str) -> None:
    client, _ = viewer
    response = client.get(f"/sagemaker-reports{path}")
    assert response.status_code == 401
    assert b"alert" not in response.content


def test_a_forged_token_is_refused(viewer: tuple[TestClient, Any]) -> None:
    client, _ = viewer
    response = client.get(f"/sagemaker-reports/dags/{DAG}", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 403


@pytest.mark.parametrize("path", [f"/dags/{DAG}", f"/dags/{DAG}/runs/{RUN}"])
def test_a_user_who_may_not_read_the_dag_may_not_read_its_reports(
    viewer: tuple[TestClient, Any], path: str
) -> None:
    client, am = viewer
    response = client.get(f"/sagemaker-reports{path}", headers=_bearer(am, "bob"))
    assert response.status_code == 403
    assert b"alert" not in response.content


@pytest.mark.parametrize(
    ("run_id", "file"),
    [
        ("..%2F..%2Fsecret", "report.html"),  # run id "../../secret" stays one encoded segment
        ("%2E%2E", "report.html"),
        (RUN, "..%2F..%2Fsecret.txt"),
        (RUN, "../report.html"),
        (RUN, "report.html%00"),
    ],
)
def test_keys_outside_the_report_prefix_are_refused(
    viewer: tuple[TestClient, Any], run_id: str, file: str
) -> None:
    client, am = viewer
    response = client.get(
        f"/sagemaker-reports/dags/{DAG}/runs/{run_id}?file={file}", headers=_bearer(am, "alice")
    )
    assert response.status_code in (400, 404)
    assert b"SECRET" not in response.content


def test_a_missing_report_says_so_escaped(viewer: tuple[TestClient, Any]) -> None:
    client, am = viewer
    response = client.get(f"/sagemaker-reports/dags/{DAG}/runs/<b>nope</b>", headers=_bearer(am, "alice"))
    assert response.status_code == 404
    assert "&lt;b&gt;nope&lt;/b&gt;" in response.text and "<b>nope" not in response.text


def test_without_a_configured_bucket_the_page_says_what_to_set(
    viewer: tuple[TestClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, am = viewer
    monkeypatch.delenv("AIRFLOW__SAGEMAKER_PROVIDER__REPORT_BUCKET")
    response = client.get(f"/sagemaker-reports/dags/{DAG}", headers=_bearer(am, "alice"))
    assert response.status_code == 503
    assert "report_bucket" in response.text


@pytest.mark.parametrize("path", [f"/dags/{DAG}", f"/dags/{DAG}/runs/{RUN}"])
def test_a_bucket_s3_refuses_is_a_502_naming_the_error_code(
    viewer: tuple[TestClient, Any], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    client, am = viewer
    monkeypatch.setenv("AIRFLOW__SAGEMAKER_PROVIDER__REPORT_BUCKET", "no-such-bucket-for-reports")
    response = client.get(f"/sagemaker-reports{path}", headers=_bearer(am, "alice"))
    assert response.status_code == 502
    assert "NoSuchBucket" in response.text
