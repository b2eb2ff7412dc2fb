"""Pure half of the report viewer: which keys may be read, how a listing groups, the HTML it shows.

Reports live at ``{prefix}/reports/{dag_id}/{run_id}/{file}`` (see :mod:`airflow_sm_provider.s3_keys`).
The viewer never takes a key from a request: it builds one from a DAG id, a run id (each
through ``encode_segment``, which leaves no ``/`` or ``..``) and a file name from
:data:`REPORT_FILES`. Anything else is refused, so no request reaches outside the report prefix.

Our own pages (the listing, messages) are rendered with Jinja2 autoescape and carry
:data:`PAGE_CSP`: no script at all, inline style only. No AWS, no Airflow (the report renderer
is imported for its file table, pure as well).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_sm_provider.reporting.render import CONTENT_TYPES
from airflow_sm_provider.s3_keys import decode_segment, report_prefix

if TYPE_CHECKING:
    import jinja2

# The files a report is made of, with the type each is served as; nothing else is served.
REPORT_FILES = CONTENT_TYPES
REPORT_PAGE = "report.html"
# Our own pages: nothing runs, nothing is fetched, only our frame parent may embed them.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'"
)
MAX_LISTED_RUNS = 200


def report_file_key(prefix: str, dag_id: str, run_id: str, name: str) -> str:
    """The S3 key of one report file; refuses a name that is not a report file."""
    if name not in REPORT_FILES:
        raise ValueError(f"file: {name!r} is not a report file (one of {', '.join(REPORT_FILES)})")
    return report_prefix(prefix, dag_id, run_id) + name


def dag_reports_prefix(prefix: str, dag_id: str) -> str:
    """``{prefix}/reports/{dag_id}/``: under it, one folder per DAG run with a report."""
    return report_prefix(prefix, dag_id, "-").removesuffix("-/")  # "-" encodes as itself


@dataclass
class RunReport:
    """The report files one DAG run has in S3, as a listing shows them."""

    run_id: str
    modified: datetime | None = None
    files: dict[str, int] = field(default_factory=dict)  # name -> size in bytes


def group_reports(objects: Iterable[Mapping[str, Any]], dag_prefix: str) -> list[RunReport]:
    """Group ``ListObjectsV2`` entries under ``dag_prefix`` by DAG run, newest first.

    Keys that are not ``{run}/{report file}`` with a run segment ``encode_segment`` makes are
    skipped: the listing shows only what the viewer would serve.
    """
    runs: dict[str, RunReport] = {}
    for obj in objects:
        segment, _, name = str(obj["Key"]).removeprefix(dag_prefix).partition("/")
        if name not in REPORT_FILES:
            continue
        try:
            run_id = decode_segment(segment)
        except ValueError:
            continue
        run = runs.setdefault(run_id, RunReport(run_id))
        run.files[name] = int(obj.get("Size", 0))
        modified = obj.get("LastModified")
        if modified is not None and (run.modified is None or modified > run.modified):
            run.modified = modified
    newest_first = sorted(runs.values(), key=lambda r: (r.modified is not None, r.modified), reverse=True)
    return newest_first[:MAX_LISTED_RUNS]


def dag_path(base: str, dag_id: str) -> str:
    """The viewer's URL path of a DAG's listing (``base`` is where the viewer is mounted)."""
    return f"{base.rstrip('/')}/dags/{quote(dag_id, safe='')}"


def run_path(base: str, dag_id: str, run_id: str, name: str = REPORT_PAGE) -> str:
    """The viewer's URL path of a run's report file."""
    path = f"{dag_path(base, dag_id)}/runs/{quote(run_id, safe='')}"
    return path if name == REPORT_PAGE else f"{path}?file={quote(name, safe='')}"


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.2rem; color: #1b1f24; }
h1 { font-size: 1.25rem; margin: 0 0 .3rem; } p.sub { color: #57606a; margin: 0 0 1rem; }
table { border-collapse: collapse; min-width: 40rem; }
th, td { text-align: left; padding: .35rem .7rem; border-bottom: 1px solid #d0d7de; }
th { background: #f6f8fa; } td.files a { margin-right: .7rem; }
code { background: #f6f8fa; padding: 0 .25rem; border-radius: 3px; }
"""

_LISTING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Reports of {{ dag_id }}</title>
<style>{{ style }}</style></head><body>
<h1>Comparison reports of <code>{{ dag_id }}</code></h1>
<p class="sub">{{ location }}{% if truncated %} · the {{ runs|length }} newest{% endif %}</p>
{% if runs %}<table><thead><tr><th>DAG run</th><th>Written (UTC)</th><th>Files</th></tr></thead><tbody>
{% for run in runs %}<tr>
<td><a href="{{ link(run.run_id) }}" target="_self">{{ run.run_id }}</a></td>
<td>{{ run.modified.strftime("%Y-%m-%d %H:%M:%S") if run.modified else "" }}</td>
<td class="files">{% for name in files if name in run.files %}
<a href="{{ link(run.run_id, name) }}">{{ name }}</a>{% endfor %}</td>
</tr>{% endfor %}</tbody></table>
{% else %}<p>No report has been written for this DAG yet.</p>{% endif %}
</body></html>
"""

_MESSAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title><style>{{ style }}</style></head>
<body><h1>{{ title }}</h1><p>{{ text }}</p>
{% if back %}<p><a href="{{ back }}">All reports of this DAG</a></p>{% endif %}
</body></html>
"""


@cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def render_listing(dag_id: str, runs: list[RunReport], *, location: str, base: str) -> str:
    """The HTML list of a DAG's reports; every string from S3 or the request is escaped."""

    def link(run_id: str, name: str = REPORT_PAGE) -> str:
        return run_path(base, dag_id, run_id, name)

    return (
        _environment()
        .from_string(_LISTING)
        .render(
            dag_id=dag_id,
            runs=runs,
            location=location,
            truncated=len(runs) >= MAX_LISTED_RUNS,
            link=link,
            files=list(REPORT_FILES),  # always in one order: the page first
            style=_STYLE,
        )
    )


def render_message(title: str, text: str, *, back: str = "") -> str:
    """A short escaped page (no report yet, misconfiguration) in place of a bare error."""
    return _environment().from_string(_MESSAGE).render(title=title, text=text, back=back, style=_STYLE)
