"""Renderers of a :class:`~airflow_sm_provider.reporting.model.Report`: HTML, CSV and JSON artifacts.

:func:`render_artifacts` returns every file as ``{filename: (bytes, content_type)}`` so the
uploader is one loop; :func:`render_html` also returns the page's Content-Security-Policy so a
server (the UI plugin, S3 metadata) can send it as a header, where ``frame-ancestors`` counts.

``report.json`` (schema ``1.0``):

- ``schema_version`` (str), ``objective`` (``{"metric", "direction"}``), ``rank_by``
  (``"final"``/``"best"``), ``generated_at`` (ISO 8601, UTC);
- ``runs``: the leaderboard, ranked runs first (``rank`` 1..n) then runs without a value
  (``rank`` null); ``failed``: failed and stopped runs. Each run has ``name, job_name, status,
  failure_reason, rank, objective_final, objective_best, best_step, final_metrics,
  hyperparameters, instance_type, instance_count, spot, training_seconds, billable_seconds,
  spot_savings, cost_usd, cost_note, model_artifact, links, tags, debug_rule_statuses, health``
  and ``non_finite``: ``{field path: "nan"|"inf"|"-inf"}`` for each number written as null
  because it was not finite;
- ``health``: every flag ``{run, rule, metric, step, reason}``;
- ``parameter_effects``: ``{name, points, spearman, note}`` per numeric hyperparameter;
- ``notes``: free-text remarks (e.g. an instance type without a price).

``runs.csv`` has one row per run (leaderboard, then failed) with the same fields flattened;
``metrics.csv`` is the tidy per-step series. Text cells that a spreadsheet would run as a
formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) get a leading ``'``;
numbers, and text that is a plain number such as ``-0.5``, are left as they are.

Charts come ready-made as PNG bytes keyed ``curves/{metric}``, ``params/parallel`` and
``params/scatter/{hyperparameter}`` and are inlined as ``data:`` URIs: the page fetches nothing.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_sm_provider.reporting.model import SCHEMA_VERSION, Report, RunSummary

if TYPE_CHECKING:
    import jinja2
    import numpy as np
    import pandas as pd

TEMPLATES = Path(__file__).parent / "templates"
CONTENT_TYPES = {
    "report.html": "text/html; charset=utf-8",
    "report.json": "application/json",
    "runs.csv": "text/csv; charset=utf-8",
    "metrics.csv": "text/csv; charset=utf-8",
}
SEVERE_RULES = frozenset({"non_finite", "divergence", "stalled"})
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHART_PREFIXES = ("curves/", "params/scatter/")


def neutralise(cell: str) -> str:
    """A text cell made inert for spreadsheets (OWASP CSV injection): a leading ``'`` if needed."""
    if cell.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str):
        return neutralise(value)
    return "" if value is None else value


def _csv_bytes(header: list[str], rows: Iterable[Iterable[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([neutralise(h) for h in header])
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def report_json(report: Report) -> bytes:
    """``report.json``: strict JSON (``allow_nan=False``), non-finite numbers as null."""
    return json.dumps(report.to_dict(), indent=1, allow_nan=False, ensure_ascii=False).encode("utf-8")


def runs_csv(report: Report) -> bytes:
    """``runs.csv``: one row per run; final metrics as ``metric:{name}``, hyperparameters as ``hp:{name}``."""
    runs = report.all_runs()
    metric_names = sorted({m for r in runs for m in r.final_metrics})
    param_names = sorted({p for r in runs for p in r.hyperparameters})
    fixed = ["rank", "name", "job_name", "status", "objective_final", "objective_best", "best_step"]
    tail = [
        "instance_type",
        "instance_count",
        "spot",
        "training_seconds",
        "billable_seconds",
        "spot_savings",
        "cost_usd",
        "health",
        "failure_reason",
        "tags",
        "links",
    ]
    header = fixed + [f"metric:{m}" for m in metric_names] + [f"hp:{p}" for p in param_names] + tail

    def row(run: RunSummary) -> list[Any]:
        health = "; ".join(badge.label for badge in _badges(run))
        values = [getattr(run, name) for name in fixed]
        values += [run.final_metrics.get(m) for m in metric_names]
        values += [run.hyperparameters.get(p) for p in param_names]
        values += [getattr(run, name) for name in tail[:7]]
        values += [health, run.failure_reason, json.dumps(run.tags), json.dumps(run.links)]
        return [_csv_cell(v) for v in values]

    return _csv_bytes(header, (row(r) for r in runs))


def _quote(cell: str) -> str:
    """One CSV field as the csv module writes it (minimal quoting)."""
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\n\r') else cell


def _combined_cells(columns: list[tuple[np.ndarray, list[str]]]) -> tuple[np.ndarray, list[str]]:
    """Adjacent CSV cells that change together, as codes into their distinct joined texts.

    ``columns`` are (codes, texts) pairs; run, job and metric change once per block of
    thousands of rows, so their three cells are joined once per block, not once per row.
    """
    import numpy as np

    stacked = np.stack([codes for codes, _ in columns], axis=1)
    change = np.ones(len(stacked), dtype=bool)
    change[1:] = (stacked[1:] != stacked[:-1]).any(axis=1)
    names = [texts for _, texts in columns]
    texts = [",".join(map(list.__getitem__, names, head)) for head in stacked[change].tolist()]
    return np.cumsum(change) - 1, texts


def _text_cells(series: pd.DataFrame, name: str) -> tuple[np.ndarray, list[str]]:
    """A text column as codes into its distinct values, neutralised and quoted once each."""
    import numpy as np

    from airflow_sm_provider.metrics.health import factorize_blocks

    if name not in series:
        return np.zeros(len(series), dtype="int64"), [""]
    codes, names = factorize_blocks(series[name])
    return codes, [_quote(neutralise(value)) for value in names]


METRICS_CSV_CHUNK = 200_000
METRICS_CSV_HEADER = ("run", "job", "metric", "step", "value", "timestamp", "source", "finite")


def metrics_csv(series: pd.DataFrame | None) -> bytes:
    """``metrics.csv``: the tidy series, timestamps in ISO 8601 UTC with milliseconds.

    Formatted by hand rather than with the csv module (several times faster on millions of
    rows): only text cells can need quoting, and each distinct one is quoted once. Written in
    chunks so the Python strings of one chunk exist at a time.
    """
    import numpy as np

    # BytesIO.getvalue() hands over its buffer without a copy: one copy of the file in memory.
    out = io.BytesIO()
    out.write((",".join(METRICS_CSV_HEADER) + "\n").encode())
    if series is None or series.empty:
        return out.getvalue()
    values = series["value"].to_numpy(dtype=float)
    finite = np.isfinite(values)
    head_codes, heads = _combined_cells([_text_cells(series, name) for name in ("run", "job", "metric")])
    source_codes, sources = _text_cells(series, "source")
    tail_codes = source_codes * 2 + finite
    tails = [f"{source},{flag}" for source in sources for flag in ("False", "True")]
    steps = series["step"].to_numpy(dtype="int64")
    stamps = series["timestamp"].to_numpy(dtype="datetime64[ns]").astype("datetime64[ms]")
    for start in range(0, len(series), METRICS_CSV_CHUNK):
        window = slice(start, start + METRICS_CSV_CHUNK)
        lines = map(
            ",".join,
            zip(
                map(heads.__getitem__, head_codes[window].tolist()),
                map(str, steps[window].tolist()),
                map(repr, values[window].tolist()),
                np.datetime_as_string(stamps[window], unit="ms", timezone="UTC").tolist(),
                map(tails.__getitem__, tail_codes[window].tolist()),
                strict=True,
            ),
        )
        out.write(("\n".join(lines) + "\n").encode("utf-8"))
    return out.getvalue()


@dataclass(frozen=True)
class HtmlReport:
    """The page and the Content-Security-Policy it was written for (send it as a header too)."""

    html: bytes
    csp: str


@dataclass(frozen=True)
class _Chart:
    title: str
    uri: str


@dataclass(frozen=True)
class _Link:
    name: str
    href: str | None
    text: str


@dataclass(frozen=True)
class _Badge:
    """One rule at one step of a run: the label ``rule @step`` and every reason behind it."""

    rule: str
    step: int | None
    reason: str

    @property
    def label(self) -> str:
        return self.rule if self.step is None else f"{self.rule}@{self.step}"


def _badges(run: RunSummary) -> list[_Badge]:
    """A run's flags, one per rule and step: a curve logged under two names (``val_loss`` from
    the log and ``validation:loss`` from the tracker) fires each rule twice at the same step."""
    reasons: dict[tuple[str, int | None], list[str]] = {}
    for flag in run.health:
        found = reasons.setdefault((flag.rule, flag.step), [])
        if flag.reason not in found:
            found.append(flag.reason)
    return [_Badge(rule, step, "; ".join(texts)) for (rule, step), texts in reasons.items()]


@cache
def _assets() -> tuple[str, str]:
    return (TEMPLATES / "report.css").read_text("utf-8"), (TEMPLATES / "report.js").read_text("utf-8")


@cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def content_security_policy(script: str, style: str) -> str:
    """The page's policy: nothing but its own inline script and style (by hash) and data: images."""
    return (
        f"default-src 'none'; script-src {_sha256(script)}; style-src {_sha256(style)}; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    )


def _charts(charts: Mapping[str, bytes]) -> tuple[list[_Chart], list[_Chart]]:
    """Curves and parameter charts as data: URIs; unknown keys or non-PNG bytes are refused."""
    curves, params = [], []
    for key in sorted(charts):
        data = charts[key]
        if not bytes(data).startswith(_PNG_SIGNATURE):
            raise ValueError(f"charts[{key!r}]: must be PNG bytes")
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        if key.startswith("curves/") and key != "curves/":
            curves.append(_Chart(f"{key.removeprefix('curves/')} by step, all runs", uri))
        elif key == "params/parallel":
            params.insert(0, _Chart("Hyperparameters and objective, one line per run", uri))
        elif key.startswith("params/scatter/") and key != "params/scatter/":
            params.append(_Chart(f"{key.removeprefix('params/scatter/')} against the objective", uri))
        else:
            raise ValueError(
                f"charts: unknown key {key!r}; expected curves/{{metric}}, params/parallel "
                "or params/scatter/{hyperparameter}"
            )
    return curves, params


def _links(run: RunSummary) -> list[_Link]:
    """Links as anchors only for http(s) URLs; anything else (javascript:, s3://) stays text."""
    out = []
    for name, url in run.links.items():
        scheme = urlsplit(url).scheme.lower() if url else ""
        out.append(_Link(name=name, href=url if scheme in ("http", "https") else None, text=url))
    return out


def _num(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf")
    return f"{value:.{digits}g}"


def _sort_key(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _percent(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.0%}"


def _money(value: float | None) -> str:
    return "—" if value is None else f"${value:,.2f}"


def render_html(report: Report, charts: Mapping[str, bytes] | None = None) -> HtmlReport:
    """``report.html``: self-contained (inline CSS, script and data: images), every string escaped."""
    css, js = _assets()
    csp = content_security_policy(js, css)
    # frame-ancestors is ignored in a <meta> policy (browsers only honour it as a header).
    csp_meta = csp.replace("; frame-ancestors 'self'", "")
    curves, param_charts = _charts(charts or {})
    runs = report.all_runs()
    param_names = sorted({p for r in runs for p in r.hyperparameters})
    modes = {
        p: Counter(r.hyperparameters.get(p) for r in runs).most_common(1)[0][0] if runs else None
        for p in param_names
    }
    same = {p for p in param_names if all(r.hyperparameters.get(p) == modes[p] for r in runs)}
    ranked = [r for r in report.runs if r.rank is not None]

    def ranked_value(run: RunSummary) -> float | None:
        return run.objective_final if report.rank_by == "final" else run.objective_best

    def param_class(name: str, value: str | None) -> str:
        return "same" if name in same else ("diff" if value != modes[name] else "")

    costs = [r.cost_usd for r in runs if r.cost_usd is not None]
    page = (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            objective=report.objective,
            rank_by=report.rank_by,
            generated_at=report.generated_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
            schema_version=SCHEMA_VERSION,
            total_runs=len(runs),
            ranked_count=len(ranked),
            best=ranked[0] if ranked else None,
            flagged_runs=len({f.run for f in report.health}),
            total_cost=sum(costs) if costs else None,
            metric_names=sorted({m for r in report.runs for m in r.final_metrics}),
            param_names=param_names,
            same_params=same,
            param_class=param_class,
            ranked_value=ranked_value,
            curves=curves,
            param_charts=param_charts,
            links=_links,
            badges=_badges,
            severe=SEVERE_RULES,
            num=_num,
            sort_key=_sort_key,
            duration=_duration,
            percent=_percent,
            money=_money,
            csp_meta=csp_meta,
            css=_markup(css),
            js=_markup(js),
        )
    )
    return HtmlReport(html=page.encode("utf-8"), csp=csp)


def _markup(text: str) -> Any:
    """Our own static CSS/JS, inserted verbatim so its hash matches the policy."""
    import markupsafe

    return markupsafe.Markup(text)  # noqa: S704 - packaged static files, never user input


def render_artifacts(
    report: Report, series: pd.DataFrame | None, charts: Mapping[str, bytes] | None = None
) -> dict[str, tuple[bytes, str]]:
    """Every report file as ``{filename: (body, content_type)}``: the uploader writes them in one loop.

    Filenames: ``report.html``, ``report.json``, ``runs.csv``, ``metrics.csv``.
    """
    bodies = {
        "report.html": render_html(report, charts).html,
        "report.json": report_json(report),
        "runs.csv": runs_csv(report),
        "metrics.csv": metrics_csv(series),
    }
    return {name: (body, CONTENT_TYPES[name]) for name, body in bodies.items()}
