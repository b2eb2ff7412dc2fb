"""Keeps what the embedded moto accepted (S3, CloudWatch Logs, CloudWatch) in the engine's data dir.

Theory of operation. moto holds S3 objects, log events and metric datums in this process's
memory and has no persistence of its own. :class:`AwsMirror` makes them survive a restart with
a *write-through mirror of moto's state*: once moto has answered a request that may change S3,
CloudWatch Logs or CloudWatch, and before that answer leaves the engine, the part of moto's
state the request may have changed is copied to the data dir. At start the mirror is loaded
back into moto. So a client told "accepted" has its write on disk (killing the engine with
SIGKILL loses nothing it acknowledged), deletions are kept like writes (a deleted object or
bucket stays deleted), and what comes back is moto's own state after each write: the S3,
Logs and CloudWatch protocols are not read a second time, so nothing can be parsed differently
from how moto parsed it.

Why not the alternatives: serialising moto's backends at shutdown loses everything since the
last clean stop when the engine is killed; a journal of requests replayed into moto at start
grows with every overwrite, pushes every body through moto again (slow starts, bodies in
memory) and cannot replay what depends on when it first ran (multipart upload ids, ingestion
times, log events older than the 14 days PutLogEvents accepts).

Layout under the data dir:

* ``aws-state.sqlite3`` (WAL): buckets (region, creation date, versioning); objects (key, ETag,
  size, last-modified, the metadata clients read back such as Content-Type, Content-Encoding and
  ``x-amz-meta-*``, storage class, encryption, checksum, tags, and the name of the body file);
  log groups (retention, tags), streams and their events in order; CloudWatch metric datums.
* ``s3-objects/<2 hex>/<32 hex>``: one file per object body, named by a random id and never by
  its key, so no key (``../``, an absolute path, NUL, 1,024 bytes) can name a path.

Bodies are streamed from moto to their file, never held whole in memory. At start, objects come
back with their bodies left on disk: moto reads a restored object's file when it is asked for
it (:class:`~airflow_sm_provider.local.moto_state.BodyFile`), so start time grows with the
number of objects and log events, not with their bytes. How moto's models are read and built
back is :mod:`~airflow_sm_provider.local.moto_state`'s concern alone. An object uploaded in
this run is held by moto as moto holds it (in memory up to about 5 MiB, in a temporary file
above) and on disk in the data dir.

Kept: the current version of every object (a versioned bucket keeps only its latest version
across a restart), buckets, log groups, streams and events, CloudWatch metric datums. Not kept:
multipart uploads not yet completed, bucket policies, lifecycle, notification and CORS
settings, object ACLs, CloudWatch alarms and dashboards. SageMaker's own records, Experiments
and ``BatchPutMetrics`` points are in the engine's SQLite store already (:mod:`store`).

What is compared after which request: an S3 ``PUT``/``POST``/``DELETE`` brings the key its
path names (path or virtual-host style) in line, or the whole bucket when it names no key that
moto or the disk holds (bucket requests, DeleteObjects); multipart parts change nothing until
the upload completes. A CloudWatch Logs write compares every stream's event count with the
count on disk and appends the new events. A CloudWatch request appends the new datums.

Durability: each request's changes are one SQLite transaction (WAL, ``synchronous=NORMAL``);
bodies are written before it and not fsync'ed, and a replaced or deleted body is removed only
after it commits. Everything acknowledged survives the engine process dying; a power loss may
lose the last writes. A body written for a transaction that never committed is removed at the
next start. If the mirror cannot write (a full disk), the request fails with a server error
and the mirror re-reads its index from disk, so it never believes in a write it lost.
Updates run one at a time (one lock), so the last one always copies moto's latest state; a
large upload holds the lock while its body is copied. Engines started in one process share
moto: at start, a mirror adds what moto lacks and keeps what moto already holds.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from airflow_sm_provider.local import moto_state
from airflow_sm_provider.local.gate import SERVICE_KEY

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

DB_NAME = "aws-state.sqlite3"
BODIES_DIR = "s3-objects"
#: CloudWatch Logs operations that change nothing: no mirror update after them.
_LOGS_READS = ("Describe", "Get", "List", "Filter", "Test", "StartQuery", "StopQuery")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS s3_buckets (
    name TEXT PRIMARY KEY, account TEXT NOT NULL, partition TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS s3_objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, file TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE IF NOT EXISTS log_groups (
    account TEXT NOT NULL, region TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (account, region, name)
);
CREATE TABLE IF NOT EXISTS log_streams (
    id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, region TEXT NOT NULL,
    grp TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, UNIQUE (account, region, grp, name)
);
CREATE TABLE IF NOT EXISTS log_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stream INTEGER NOT NULL, timestamp INTEGER NOT NULL,
    ingestion INTEGER NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_events_by_stream ON log_events (stream, id);
CREATE TABLE IF NOT EXISTS metric_datums (
    id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, region TEXT NOT NULL,
    body TEXT NOT NULL
);
"""


@dataclass
class _Stream:
    obj: Any  # moto's LogStream whose events are on disk; None: unknown, rewrite on next sync
    row: int  # its id in log_streams (events refer to it: group and stream names are not repeated)
    count: int
    fingerprint: str = ""


@dataclass
class _Group:
    obj: Any
    fingerprint: str = ""
    streams: dict[str, _Stream] = field(default_factory=dict)


@dataclass
class _Object:
    file: str
    fingerprint: str
    body_token: str


class AwsMirror:
    """Mirrors moto's S3, CloudWatch Logs and CloudWatch state into ``data_dir`` (module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self._bodies = data_dir / BODIES_DIR
        self._bodies.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(data_dir / DB_NAME), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._buckets: dict[str, str] = {}  # name -> fingerprint on disk
        self._objects: dict[tuple[str, str], _Object] = {}
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._datums: dict[tuple[str, str], tuple[Any, int]] = {}  # (account, region) -> (backend, count)
        self._folders: set[str] = set()  # body folders known to exist
        self._doomed: list[tuple[str, str, str]] = []  # (bucket, key, body file) to delete on commit

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- the WSGI side ------------------------------------------------------------------------
    def wrap(self, app: WsgiApp) -> WsgiApp:
        """``app`` (the embedded moto), with the mirror updated before each answer is sent."""

        def mirrored(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            statuses: list[str] = []

            def start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
                statuses.append(status)
                return start_response(status, headers, *args)

            result = app(environ, start)
            try:
                self.after_request(environ, statuses[-1] if statuses else "")
            except BaseException:
                if hasattr(result, "close"):
                    result.close()
                raise
            return result

        return mirrored

    def after_request(self, environ: dict[str, Any], status: str) -> None:
        """Copy what the request may have changed in moto to disk (a no-op for reads)."""
        service, method = environ.get(SERVICE_KEY), environ["REQUEST_METHOD"]
        if service == "s3" and method in ("PUT", "POST", "DELETE"):
            self._after_s3(environ, status.startswith("2"))
        elif service == "logs":
            operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
            if not operation.startswith(_LOGS_READS):
                with self._transaction():
                    self._sync_logs()
        elif service == "monitoring":
            with self._transaction():
                self._sync_datums()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One request's changes, under the mirror's lock, committed together (or not at all)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                self._doomed.clear()
                self._load_index()
                raise
            self._db.execute("COMMIT")
            # Only now may replaced bodies go: until the commit, the rows on disk still name them.
            doomed, self._doomed = self._doomed, []
            for bucket_name, key, file in doomed:
                self._remove_body(bucket_name, key, file)

    # -- S3 -----------------------------------------------------------------------------------
    def _after_s3(self, environ: dict[str, Any], succeeded: bool) -> None:
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if "uploads" in query or ("uploadId" in query and environ["REQUEST_METHOD"] != "POST"):
            return  # a multipart upload's start, parts or abort: no object changes until it completes
        targets = _s3_targets(environ)
        with self._transaction():
            touched = False
            for bucket, key in targets:
                if key:
                    touched |= self._sync_key(bucket, key)
            if succeeded and not touched:  # a bucket request, or one whose key we read otherwise
                for bucket, _ in targets:
                    self._sync_bucket(bucket)

    def _sync_bucket(self, name: str) -> None:
        bucket = moto_state.bucket(name)
        if bucket is None:
            if name in self._buckets:
                self._drop_bucket(name)
            return
        self._save_bucket(bucket)
        present = set(dict.keys(bucket.keys))
        for key in present:
            self._sync_key(name, key)
        for bucket_name, key in [k for k in self._objects if k[0] == name and k[1] not in present]:
            self._sync_key(bucket_name, key)

    def _save_bucket(self, bucket: Any) -> None:
        body = json.dumps(moto_state.bucket_meta(bucket))
        if self._buckets.get(bucket.name) != body:
            self._db.execute(
                "INSERT OR REPLACE INTO s3_buckets (name, account, partition, body) VALUES (?, ?, ?, ?)",
                (bucket.name, bucket.account_id, bucket.partition, body),
            )
            self._buckets[bucket.name] = body

    def _drop_bucket(self, name: str) -> None:
        for bucket_name, key in [k for k in self._objects if k[0] == name]:
            self._drop_object(bucket_name, key)
        self._db.execute("DELETE FROM s3_buckets WHERE name = ?", (name,))
        self._buckets.pop(name, None)

    def _sync_key(self, bucket_name: str, key: str) -> bool:
        """Bring one key on disk in line with moto; False if neither holds it."""
        bucket = moto_state.bucket(bucket_name)
        current = moto_state.current_key(bucket, key) if bucket is not None else None
        known = self._objects.get((bucket_name, key))
        if current is None:
            if known is None:
                return False
            self._drop_object(bucket_name, key)
            return True
        self._save_bucket(bucket)
        meta = moto_state.object_meta(current, bucket)
        fingerprint = json.dumps(meta, sort_keys=True)
        if known is not None and known.fingerprint == fingerprint:
            return True
        token = _body_token(meta)
        file = known.file if known is not None and known.body_token == token else self._copy_body(current)
        self._db.execute(
            "INSERT OR REPLACE INTO s3_objects (bucket, key, file, body) VALUES (?, ?, ?, ?)",
            (bucket_name, key, file, fingerprint),
        )
        self._objects[(bucket_name, key)] = _Object(file, fingerprint, token)
        if known is not None and known.file != file:
            self._doomed.append((bucket_name, key, known.file))
        return True

    def _drop_object(self, bucket_name: str, key: str) -> None:
        known = self._objects.pop((bucket_name, key))
        self._db.execute("DELETE FROM s3_objects WHERE bucket = ? AND key = ?", (bucket_name, key))
        self._doomed.append((bucket_name, key, known.file))

    def _body_path(self, file: str) -> Path:
        return self._bodies / file[:2] / file

    def _copy_body(self, fake_key: Any) -> str:
        """Stream a moto key's body into a new file; returns its name (random, never the key)."""
        file = uuid.uuid4().hex
        path = self._body_path(file)
        if path.parent.name not in self._folders:
            path.parent.mkdir(exist_ok=True)
            self._folders.add(path.parent.name)
        with open(path, "wb") as out:
            moto_state.copy_body(fake_key, out)
        return file

    def _remove_body(self, bucket_name: str, key: str, file: str) -> None:
        """Delete a body file; older versions moto still holds that read it get their own copy."""
        path = self._body_path(file)
        moto_state.detach_body(bucket_name, key, path)
        path.unlink(missing_ok=True)

    # -- CloudWatch Logs ----------------------------------------------------------------------
    def _sync_logs(self) -> None:
        for account, backend in moto_state.backends_in_use("logs"):
            region = backend.region_name
            present = dict(backend.groups)
            for name, group in present.items():
                self._sync_group(account, region, name, group)
            for gone in [k for k in self._groups if k[:2] == (account, region) and k[2] not in present]:
                self._drop_group(gone)

    def _sync_group(self, account: str, region: str, name: str, group: Any) -> None:
        key = (account, region, name)
        state = self._groups.get(key)
        if state is None or (state.obj is not None and state.obj is not group):
            if state is not None:
                self._drop_group(key)
            state = self._groups[key] = _Group(group)
        state.obj = group
        body = json.dumps(moto_state.group_meta(account, region, group), sort_keys=True)
        if body != state.fingerprint:
            self._db.execute(
                "INSERT OR REPLACE INTO log_groups (account, region, name, body) VALUES (?, ?, ?, ?)",
                (*key, body),
            )
            state.fingerprint = body
        streams = dict(group.streams)
        for stream_name, stream in streams.items():
            self._sync_stream(key, state, stream_name, stream)
        for gone in [s for s in state.streams if s not in streams]:
            self._drop_stream(state, gone)

    def _sync_stream(self, group_key: tuple[str, str, str], group: _Group, name: str, stream: Any) -> None:
        events = stream.events
        total = len(events)
        state = group.streams.get(name)
        if state is not None and state.obj is stream and state.count <= total:
            if state.count == total:
                return  # a stream changes only with new events: nothing to write
            new = events[state.count : total]
        else:
            if state is not None:
                self._drop_stream(group, name)
            row = self._db.execute(
                "INSERT INTO log_streams (account, region, grp, name, body) VALUES (?, ?, ?, ?, '{}')",
                (*group_key, name),
            ).lastrowid
            state = group.streams[name] = _Stream(stream, row, 0)
            new = events[:total]
        if new:
            self._db.executemany(
                "INSERT INTO log_events (stream, timestamp, ingestion, message) VALUES (?, ?, ?, ?)",
                [(state.row, e.timestamp, e.ingestion_time, e.message) for e in new],
            )
            state.count = total
        body = json.dumps(moto_state.stream_meta(stream))
        if body != state.fingerprint:
            self._db.execute("UPDATE log_streams SET body = ? WHERE id = ?", (body, state.row))
            state.fingerprint = body

    def _drop_stream(self, group: _Group, name: str) -> None:
        state = group.streams.pop(name)
        self._db.execute("DELETE FROM log_events WHERE stream = ?", (state.row,))
        self._db.execute("DELETE FROM log_streams WHERE id = ?", (state.row,))

    def _drop_group(self, key: tuple[str, str, str]) -> None:
        group = self._groups.pop(key)
        for name in list(group.streams):
            self._drop_stream(group, name)
        self._db.execute("DELETE FROM log_groups WHERE account = ? AND region = ? AND name = ?", key)

    # -- CloudWatch metrics -------------------------------------------------------------------
    def _sync_datums(self) -> None:
        for account, backend in moto_state.backends_in_use("cloudwatch"):
            key = (account, backend.region_name)
            data = backend.metric_data
            total = len(data)
            known, count = self._datums.get(key, (None, 0))
            if known is not backend or count > total:
                self._db.execute("DELETE FROM metric_datums WHERE account = ? AND region = ?", key)
                count = 0
            if total > count:
                self._db.executemany(
                    "INSERT INTO metric_datums (account, region, body) VALUES (?, ?, ?)",
                    [(*key, json.dumps(moto_state.datum_to_json(d))) for d in data[count:total]],
                )
            self._datums[key] = (backend, total)

    # -- start ---------------------------------------------------------------------------------
    def restore(self) -> dict[str, int]:
        """Load the mirror into moto (what moto lacks) and remove orphaned body files.

        Returns how many buckets, objects, log events and datums are on disk.
        """
        with self._lock:
            self._load_index()
            counts = {
                "buckets": len(self._buckets),
                "objects": len(self._objects),
                "log_events": sum(s.count for g in self._groups.values() for s in g.streams.values()),
                "datums": 0,
            }
            # moto's models are imported only when there is something to load: a fresh start stays fast.
            if self._buckets:
                self._restore_s3()
            if self._groups:
                self._restore_logs()
            if self._has_rows("metric_datums"):
                counts["datums"] = self._restore_datums()
            self._remove_orphans()
        return counts

    def _has_rows(self, table: str) -> bool:
        return self._db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None  # noqa: S608

    def _load_index(self) -> None:
        """What is on disk, as the mirror compares it with moto; moto's objects yet unknown.

        Also what a failed update falls back to: the database is the truth, and every log stream
        and metric datum is written anew from moto at its next update.
        """
        self._buckets = dict(self._db.execute("SELECT name, body FROM s3_buckets"))
        self._objects = {
            (bucket, key): _Object(file, body, _body_token(json.loads(body)))
            for bucket, key, file, body in self._db.execute(
                "SELECT bucket, key, file, body FROM s3_objects ORDER BY rowid"
            )
        }
        self._groups = {
            (account, region, name): _Group(None, body)
            for account, region, name, body in self._db.execute(
                "SELECT account, region, name, body FROM log_groups"
            )
        }
        counts = dict(self._db.execute("SELECT stream, count(*) FROM log_events GROUP BY stream"))
        for row, account, region, grp, name, body in self._db.execute(
            "SELECT id, account, region, grp, name, body FROM log_streams"
        ).fetchall():
            self._groups[(account, region, grp)].streams[name] = _Stream(None, row, counts.get(row, 0), body)
        self._datums = {}

    def _restore_s3(self) -> None:
        for name, account, partition, body in self._db.execute(
            "SELECT name, account, partition, body FROM s3_buckets"
        ).fetchall():
            if moto_state.bucket(name) is None:
                moto_state.add_bucket(name, account, partition, json.loads(body))
        buckets = {name: moto_state.bucket(name) for name in self._buckets}
        for (bucket_name, key), known in self._objects.items():
            bucket = buckets.get(bucket_name)
            if bucket is not None and moto_state.current_key(bucket, key) is None:
                moto_state.add_key(bucket, key, json.loads(known.fingerprint), self._body_path(known.file))

    def _restore_logs(self) -> None:
        for (account, region, name), state in self._groups.items():
            group = moto_state.logs_backend(account, region).groups.get(name)
            if group is None:
                group = moto_state.add_group(account, region, name, json.loads(state.fingerprint))
            state.obj = group
            for stream_name, stream_state in state.streams.items():
                if stream_name in group.streams:  # moto has it already (an engine of this process wrote it)
                    continue
                events = self._db.execute(
                    "SELECT timestamp, ingestion, message FROM log_events WHERE stream = ? ORDER BY id",
                    (stream_state.row,),
                )
                stream_state.obj = moto_state.add_stream(
                    group, stream_name, json.loads(stream_state.fingerprint), events
                )

    def _restore_datums(self) -> int:
        rows: dict[tuple[str, str], list[str]] = {}
        for account, region, body in self._db.execute(
            "SELECT account, region, body FROM metric_datums ORDER BY id"
        ):
            rows.setdefault((account, region), []).append(body)
        for (account, region), bodies in rows.items():
            backend = moto_state.cloudwatch_backend(account, region)
            held = {json.dumps(moto_state.datum_to_json(d)) for d in backend.metric_data}
            backend.metric_data.extend(
                moto_state.datum_from_json(json.loads(b)) for b in bodies if b not in held
            )
            self._datums[(account, region)] = (backend, len(backend.metric_data))
        return sum(len(b) for b in rows.values())

    def _remove_orphans(self) -> None:
        """Body files no row names: left by an engine killed between writing a body and its row."""
        known = {o.file for o in self._objects.values()}
        for folder in self._bodies.iterdir():
            for path in folder.iterdir() if folder.is_dir() else ():
                if path.name not in known:
                    path.unlink(missing_ok=True)


def _body_token(meta: dict[str, Any]) -> str:
    """What tells one body from another: a new ETag, size or time means a new body to copy."""
    return json.dumps([meta["etag"], meta["size"], meta["last_modified"]])


def _s3_targets(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) a request may address: path style, and virtual-host style if the Host has a
    subdomain. Both are tried; a guess that names nothing in moto or on disk changes nothing."""
    raw = environ.get("PATH_INFO", "/")
    path = raw.encode("latin-1").decode("utf-8", errors="replace")  # WSGI: bytes as latin-1
    bucket, _, key = path.lstrip("/").partition("/")
    targets = [(bucket, key)] if bucket else []
    host = environ.get("HTTP_HOST", "").rpartition(":")[0] or environ.get("HTTP_HOST", "")
    label, dot, _ = host.partition(".")
    if dot and not label.isdigit() and not host.startswith("["):
        targets.append((label, path.lstrip("/")))
    return targets
