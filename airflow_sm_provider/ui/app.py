"""The report viewer: a FastAPI app that Airflow 3's API server mounts for the plugin.

Routes (under the plugin's ``url_prefix``, :data:`~airflow_sm_provider.ui.links.URL_PREFIX`):

- ``GET /dags/{dag_id}``: the DAG's comparison reports, newest first (HTML);
- ``GET /dags/{dag_id}/runs/{run_id}``: a DAG run's ``report.html``, with the report's
  Content-Security-Policy as a header; ``?file=runs.csv|metrics.csv|report.json`` for the others.

Airflow mounts plugin apps without authentication, so every route depends on Airflow's own
``requires_access_dag("GET", DagAccessEntity.RUN)`` (``airflow.api_fastapi.core_api.security``):
the user comes from the ``Authorization: Bearer`` header or, for the UI's iframe and for a
link opened in a tab, the ``_token`` cookie the UI's login sets; no user is a 401, a user the
auth manager does not let read the DAG's runs is a 403. That module is internal to Airflow: if
it cannot be imported, every request is refused (503), never served unchecked.

Where the reports are: ``s3://{[sagemaker_provider] report_bucket}/{report_prefix}/reports/...``,
read through the AWS connection ``[sagemaker_provider] report_conn_id`` (default ``aws_default``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from airflow_sm_provider.ui.links import URL_PREFIX
from airflow_sm_provider.ui.pages import (
    PAGE_CSP,
    REPORT_FILES,
    REPORT_PAGE,
    dag_path,
    dag_reports_prefix,
    group_reports,
    render_listing,
    render_message,
    report_file_key,
)

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

CONFIG_SECTION = "sagemaker_provider"
log = logging.getLogger(__name__)


def _airflow_dag_read_check() -> Callable[..., None]:
    """Airflow's own check that the caller may read the DAG named by the ``dag_id`` path parameter."""
    try:
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
        from airflow.api_fastapi.core_api.security import requires_access_dag
    except ImportError as error:  # an internal API moved: fail closed
        log.error("SageMaker reports: no Airflow authorization to apply (%s); refusing every request", error)
        reason = str(error)

        def refuse() -> None:
            raise HTTPException(503, f"the report viewer cannot check permissions on this Airflow: {reason}")

        return refuse
    return requires_access_dag("GET", DagAccessEntity.RUN)


@cache
def report_csp() -> str:
    """The header policy of a served ``report.html``: the one the installed renderer writes.

    Computed here, never read from S3: whoever can write the bucket must not choose the
    policy of a page shown in Airflow's origin. A report written by another version of the
    renderer stays readable; only its script (column sorting) may be blocked.
    """
    from airflow_sm_provider.reporting.render import TEMPLATES, content_security_policy

    script = (TEMPLATES / "report.js").read_text("utf-8")
    style = (TEMPLATES / "report.css").read_text("utf-8")
    return content_security_policy(script, style)


def _settings() -> tuple[str, str, str]:
    """(bucket, prefix, connection id) from ``[sagemaker_provider]``; bucket "" when unset."""
    from airflow.configuration import conf

    return (
        conf.get(CONFIG_SECTION, "report_bucket", fallback="") or "",
        conf.get(CONFIG_SECTION, "report_prefix", fallback="") or "",
        conf.get(CONFIG_SECTION, "report_conn_id", fallback="aws_default") or "aws_default",
    )


def _s3(conn_id: str) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook: AwsBaseHook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    return hook.conn


def _html(body: str | bytes, status: int = 200, csp: str = PAGE_CSP) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_security_headers(csp))


def _security_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "private, no-store",
    }


def _base(request: Request) -> str:
    """The path the viewer is mounted at, as the browser sees it (proxy root path included)."""
    return request.scope.get("root_path", "") or URL_PREFIX


def _no_bucket() -> HTMLResponse:
    return _html(
        render_message(
            "Report location not configured",
            f"Set [{CONFIG_SECTION}] report_bucket (and report_prefix, the pipeline's key prefix) "
            "in the Airflow configuration of the API server.",
        ),
        503,
    )


def _s3_refused(error: Exception, bucket: str) -> HTMLResponse:
    """S3's refusal by its error code only (messages may name accounts or roles)."""
    code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
    log.warning("SageMaker reports: S3 refused a read in bucket %s: %s", bucket, code)
    return _html(render_message("Cannot read the reports", f"S3 answered {code} for bucket {bucket}."), 502)


def create_app() -> FastAPI:
    """The viewer's app; the plugin hands it to Airflow, tests mount it the same way."""
    app = FastAPI(title="SageMaker comparison reports", docs_url=None, redoc_url=None, openapi_url=None)
    may_read_dag = [Depends(_airflow_dag_read_check())]

    @app.get("/dags/{dag_id}", response_class=HTMLResponse, dependencies=may_read_dag)
    def list_reports(dag_id: str, request: Request) -> Response:
        """The DAG's runs that have a report, newest first."""
        bucket, prefix, conn_id = _settings()
        if not bucket:
            return _no_bucket()
        try:
            dag_prefix = dag_reports_prefix(prefix, dag_id)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        from botocore.exceptions import ClientError

        pages = _s3(conn_id).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=dag_prefix)
        try:
            runs = group_reports((obj for page in pages for obj in page.get("Contents", [])), dag_prefix)
        except ClientError as error:
            return _s3_refused(error, bucket)
        location = f"s3://{bucket}/{dag_prefix}"
        return _html(render_listing(dag_id, runs, location=location, base=_base(request)))

    @app.get("/dags/{dag_id}/runs/{run_id:path}", dependencies=may_read_dag)
    def show_report(dag_id: str, run_id: str, request: Request, file: str = REPORT_PAGE) -> Response:
        """One file of a DAG run's report; only the report files, only under the report prefix."""
        bucket, prefix, conn_id = _settings()
        if not bucket:
            return _no_bucket()
        try:
            key = report_file_key(prefix, dag_id, run_id, file)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        from botocore.exceptions import ClientError

        try:
            body = _s3(conn_id).get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NoSuchKey":
                return _s3_refused(error, bucket)
            text = f"DAG run {run_id} has no {file} at s3://{bucket}/{key} (yet)."
            return _html(render_message("No report", text, back=dag_path(_base(request), dag_id)), 404)
        if file == REPORT_PAGE:  # the bytes as written: the renderer's escaping stays as it is
            return _html(body, csp=report_csp())
        headers = {**_security_headers(PAGE_CSP), "Content-Disposition": f'attachment; filename="{file}"'}
        return Response(body, media_type=REPORT_FILES[file], headers=headers)

    return app
