"""Running one training or processing job as a local subprocess.

Directory contract: each job gets a directory laid out like a SageMaker container's ``/opt/ml``
(``input/config``, ``input/data/<channel>``, ``model``, ``output/data``, ``output/failure``,
``checkpoints``, ``code``, ``config``, ``processing/...``). A container path ``/opt/ml/<rest>``
means ``<job dir>/<rest>``.

Scripts that hard-code ``/opt/ml`` (and the SageMaker SDK, which reads
``/opt/ml/config/processingjobconfig.json`` at a fixed path) see their job directory there when
the OS allows a private mount namespace: the job runs under ``unshare --mount`` and its job
directory is bind-mounted at ``/opt/ml`` for that process tree only. That needs root (or
user namespaces) and an ``/opt/ml`` mount point, which the engine creates when it may. Where
that is not possible the engine rewrites paths instead, with one rule: an argument or an
environment value that is ``/opt/ml``, starts with ``/opt/ml/``, or has the form
``name=/opt/ml/...`` is rewritten to the job directory; paths a script builds itself are not,
so there the SDK's ``load_run()`` inside a processing job cannot find its job (training jobs
are unaffected: the SDK reads ``TRAINING_JOB_ARN``).

The runner reports progress through a callback with lifecycle events; it never writes job
records itself. A job is stopped by escalation: SIGTERM to its process group, SIGKILL after the
grace period, so no process outlives its job.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airflow_sm_provider.local.lifecycle import Event
from airflow_sm_provider.local.runtimes import Runtime

CONTAINER_ROOT = "/opt/ml"
HOST = "algo-1"
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
_REASON_MAX = 1024
_MAX_POINTS = 100_000  # metric points kept per job for its trial component
#: The only variables of the engine's own environment a job inherits. PYTHONPATH is not one:
#: the host's would put the engine's modules first in every runtime; a runtime that needs it
#: sets it in its ``env``.
HOST_ENV_ALLOWED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"})
_S3_URI = re.compile(r"^s3://([^/]+)/?(.*)$")


class JobFailure(Exception):
    """Raised when a job cannot go on; the message is its FailureReason."""


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    MAX_RUNTIME = "max_runtime"
    MAX_WAIT = "max_wait"
    INTERRUPTED = "interrupted"


@dataclass
class RunResult:
    """How one attempt of a job ended, and what it produced."""

    outcome: Outcome
    failure_reason: str | None = None
    exit_message: str | None = None
    final_metrics: list[dict[str, Any]] = field(default_factory=list)
    metric_points: list[dict[str, Any]] = field(default_factory=list)  # every match, for the job's TC
    model_artifacts: str | None = None
    output_artifacts: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Control:
    """Signals from the API to a running job, and the job's time limits (monotonic clock)."""

    stop: threading.Event = field(default_factory=threading.Event)
    interrupt: threading.Event = field(default_factory=threading.Event)
    runtime_deadline: float | None = None
    wait_deadline: float | None = None

    def limit_reached(self) -> Outcome | None:
        now = time.monotonic()
        if self.wait_deadline is not None and now >= self.wait_deadline:
            return Outcome.MAX_WAIT
        if self.runtime_deadline is not None and now >= self.runtime_deadline:
            return Outcome.MAX_RUNTIME
        return None

    def check(self) -> Outcome | None:
        """Why the job must end now, if it must."""
        if self.stop.is_set():
            return Outcome.STOPPED
        if self.interrupt.is_set():
            return Outcome.INTERRUPTED
        return self.limit_reached()


@dataclass(frozen=True)
class RunSettings:
    """Engine-wide settings every job run shares."""

    endpoint_url: str
    region: str
    data_dir: Path
    stop_grace_seconds: float = 2.0
    log_flush_seconds: float = 0.2
    checkpoint_sync_seconds: float = 5.0
    mount_namespace: bool = False
    sdk_config: Path | None = None  # the SDK's telemetry opt-out (EngineContext.sdk_config_path)


# -- paths ---------------------------------------------------------------------------------
class JobPaths:
    """The job directory and the container paths that map into it."""

    def __init__(self, root: Path, in_namespace: bool) -> None:
        self.root = root
        self.in_namespace = in_namespace

    def host(self, container_path: str) -> Path:
        """Where a container path under /opt/ml lives on this machine."""
        rel = PurePosixPath(container_path).relative_to(CONTAINER_ROOT)
        if ".." in rel.parts:
            raise JobFailure(f"ClientError: path {container_path} leaves {CONTAINER_ROOT}")
        return self.root.joinpath(*rel.parts)

    def visible(self, container_path: str) -> str:
        """The path a job's process should be told for a container path."""
        return container_path if self.in_namespace else str(self.host(container_path))

    def rewrite(self, value: str) -> str:
        """Apply the path rewriting rule of the module docstring (no-op in a namespace)."""
        if self.in_namespace:
            return value
        name, sep, rest = value.partition("=")
        if sep and _is_container_path(rest) and not _is_container_path(value):
            return f"{name}={self.host(rest)}"
        return str(self.host(value)) if _is_container_path(value) else value


def _is_container_path(value: str) -> bool:
    return value == CONTAINER_ROOT or value.startswith(CONTAINER_ROOT + "/")


def is_container_path(value: str) -> bool:
    """Whether a configured local path lies under /opt/ml, the only place the engine maps."""
    return _is_container_path(value) and ".." not in PurePosixPath(value).parts


@functools.cache
def mount_namespace_available() -> bool:
    """Whether a job can get a private mount namespace with its directory at /opt/ml."""
    if not sys.platform.startswith("linux") or not shutil.which("unshare") or not shutil.which("mount"):
        return False
    try:
        os.makedirs(CONTAINER_ROOT, exist_ok=True)
    except OSError:
        return False
    with tempfile.TemporaryDirectory() as probe:
        Path(probe, "probe").write_text("ok")
        try:
            out = subprocess.run(
                [*_unshare_prefix(probe), "cat", f"{CONTAINER_ROOT}/probe"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return out.returncode == 0 and out.stdout == b"ok"


def _unshare_prefix(job_dir: str) -> list[str]:
    """Command prefix that runs the rest of the command with ``job_dir`` bind-mounted at /opt/ml."""
    user_ns = [] if os.geteuid() == 0 else ["--map-root-user"]
    script = f'mount --bind "$0" {CONTAINER_ROOT} && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", *user_ns, "sh", "-c", script, job_dir]


# -- S3 ------------------------------------------------------------------------------------
def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key prefix) of an s3:// URI."""
    match = _S3_URI.match(uri)
    if not match:
        raise JobFailure(f"ClientError: {uri} is not an s3:// URI")
    return match.group(1), match.group(2)


def _relative_key(key: str, prefix: str) -> str:
    """Where an object lands below the destination: its key relative to the prefix."""
    if key == prefix:
        return PurePosixPath(key).name
    if prefix == "" or prefix.endswith("/") or key[len(prefix)] == "/":
        return key[len(prefix) :].lstrip("/")
    parent = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    return key[len(parent) :]


def _safe_join(dest: Path, relative: str) -> Path:
    target = (dest / relative).resolve()
    if target != dest.resolve() and dest.resolve() not in target.parents:
        raise JobFailure(f"ClientError: S3 object {relative!r} would be written outside {dest}")
    return target


def download_s3(s3: Any, uri: str, data_type: str, dest: Path, role_arn: str, region: str) -> int:
    """Download an S3Prefix or ManifestFile data source into ``dest``; returns the object count."""
    bucket, prefix = parse_s3_uri(uri)
    dest.mkdir(parents=True, exist_ok=True)
    pairs: list[tuple[str, str, str]] = []  # (bucket, key, relative path)
    try:
        if data_type == "ManifestFile":
            body = s3.get_object(Bucket=bucket, Key=prefix)["Body"].read()
            manifest = json.loads(body)
            base_bucket, base_prefix = parse_s3_uri(manifest[0]["prefix"])
            pairs = [(base_bucket, base_prefix + rel, rel) for rel in manifest[1:]]
        elif data_type == "S3Prefix":
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith("/"):
                        pairs.append((bucket, obj["Key"], _relative_key(obj["Key"], prefix)))
        else:
            raise JobFailure(f"ClientError: S3DataType {data_type} is not supported by the local engine")
    except s3.exceptions.NoSuchBucket:
        pairs = []
    except s3.exceptions.NoSuchKey as err:
        raise JobFailure(f"ClientError: Data download failed: manifest {uri} not found") from err
    except (ClientError, BotoCoreError, ValueError, KeyError, IndexError) as err:
        raise JobFailure(f"ClientError: Data download failed for {uri}: {err}") from err
    if not pairs:
        raise JobFailure(
            f'ClientError: Data download failed:No S3 objects found under S3 URL "{uri}" given in input '
            f"data source. Please ensure that the bucket exists in the selected region ({region}), "
            f'that objects exist under that S3 prefix, and that the role "{role_arn}" has '
            f'"s3:ListBucket" permissions on bucket "{bucket}".'
        )
    for src_bucket, key, rel in pairs:
        target = _safe_join(dest, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            s3.download_file(src_bucket, key, str(target))
        except (ClientError, BotoCoreError) as err:
            raise JobFailure(f"ClientError: Data download failed for s3://{src_bucket}/{key}: {err}") from err
    return len(pairs)


def upload_dir(s3: Any, src: Path, uri: str, seen: dict[str, tuple[float, int]] | None = None) -> int:
    """Upload every file below ``src`` to ``uri``/<relative path>; skip files ``seen`` unchanged."""
    bucket, prefix = parse_s3_uri(uri)
    prefix = prefix.rstrip("/")
    count = 0
    for path in sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(src).as_posix()
        stat = path.stat()
        if seen is not None:
            if seen.get(rel) == (stat.st_mtime, stat.st_size):
                continue
            seen[rel] = (stat.st_mtime, stat.st_size)
        s3.upload_file(str(path), bucket, f"{prefix}/{rel}" if prefix else rel)
        count += 1
    return count


def upload_tar(s3: Any, src: Path, uri: str, scratch: Path) -> None:
    """Upload the content of ``src`` as one gzipped tarball at ``uri``."""
    bucket, key = parse_s3_uri(uri)
    scratch.mkdir(parents=True, exist_ok=True)
    tar_path = scratch / PurePosixPath(key).name
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in sorted(src.rglob("*")):
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=path.relative_to(src).as_posix())
    s3.upload_file(str(tar_path), bucket, key)
    tar_path.unlink()


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract a source archive, refusing members that escape ``dest`` or are links or devices."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not (member.isfile() or member.isdir()):
                raise JobFailure(f"ClientError: source archive member {member.name!r} is not a plain file")
            _safe_join(dest, member.name)
        # The "data" filter enforces the same rules again inside tarfile itself.
        tar.extractall(dest, filter="data")


# -- hyperparameters and environment -------------------------------------------------------
def decode_hyperparameter(value: str) -> Any:
    """JSON-decode a hyperparameter as the sagemaker-training toolkit does; raw string if not JSON."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _arg_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def to_cmd_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """``--name value`` arguments, sorted by name, as the toolkit builds them."""
    args: list[str] = []
    for name, value in sorted(hyperparameters.items()):
        args += [f"--{name}", _arg_value(value)]
    return args


def _env_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def base_environment(
    settings: RunSettings,
    runtime: Runtime,
    user_env: Mapping[str, str],
    credentials_uri: str,
    token: str,
) -> dict[str, str]:
    """The environment every job starts from: an allowlist of the host's, the engine as its AWS.

    Of the host's environment only :data:`HOST_ENV_ALLOWED` and ``LC_*`` pass, so the host's
    secrets (Airflow connections, its database URL, AWS keys) stay out; then the runtime's
    ``env`` and the job's own ``Environment``. Every credential file botocore would read before
    the container endpoint (shared credentials, config, ``~/.boto``, ``/etc/boto.cfg``) is
    pointed at ``/dev/null``, so a job's AWS calls use its own job-scoped credentials. The job
    still runs as the engine's user: this keeps secrets out of its environment, not its reach.
    """
    env = {k: v for k, v in os.environ.items() if k in HOST_ENV_ALLOWED or k.startswith("LC_")}
    env.update(runtime.env)
    env.update(user_env)
    if settings.sdk_config is not None:
        env.setdefault("SAGEMAKER_USER_CONFIG_OVERRIDE", str(settings.sdk_config))
    env["PATH"] = os.pathsep.join([str(Path(runtime.python).parent), env.get("PATH", os.defpath)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(
        {
            "AWS_ENDPOINT_URL": settings.endpoint_url,
            "AWS_REGION": settings.region,
            "AWS_DEFAULT_REGION": settings.region,
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": credentials_uri,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
            # The provider chain reads these files before the container endpoint.
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_CONFIG_FILE": os.devnull,
            "BOTO_CONFIG": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return env


def python_command(command: list[str], runtime: Runtime) -> list[str]:
    """Replace a leading ``python``/``python3``/``python3.X`` by the runtime's interpreter."""
    if command and re.fullmatch(r"(.*/)?python(\d+(\.\d+)?)?", command[0]):
        return [runtime.python, *command[1:]]
    return command


# -- CloudWatch ----------------------------------------------------------------------------
class LogSink:
    """Writes a job's output lines to one CloudWatch Logs stream, in order."""

    def __init__(self, logs: Any, group: str, stream: str) -> None:
        self._logs = logs
        self.group = group
        self.stream = stream
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=group)
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        self._last_ms = 0

    def write(self, lines: Iterable[tuple[float, str]]) -> None:
        events = []
        for ts, text in lines:
            if not text:
                continue  # CloudWatch rejects empty messages
            self._last_ms = max(self._last_ms, int(ts * 1000))
            events.append({"timestamp": self._last_ms, "message": text[:250_000]})
        for start in range(0, len(events), 5000):
            self._logs.put_log_events(
                logGroupName=self.group, logStreamName=self.stream, logEvents=events[start : start + 5000]
            )


class MetricCollector:
    """Applies MetricDefinitions to output lines; publishes to CloudWatch as SageMaker does."""

    def __init__(self, definitions: list[Mapping[str, str]], cloudwatch: Any, job_name: str) -> None:
        self._defs = [(d["Name"], re.compile(d["Regex"])) for d in definitions]
        self._cloudwatch = cloudwatch
        self._job = job_name
        self._pending: list[dict[str, Any]] = []
        self.last: dict[str, tuple[float, float]] = {}
        self.points: list[dict[str, Any]] = []

    def feed(self, ts: float, line: str) -> None:
        for name, pattern in self._defs:
            match = pattern.search(line)
            if not match:
                continue
            try:
                value = float(match.group(1) if pattern.groups else match.group(0))
            except (ValueError, IndexError):
                continue
            if not math.isfinite(value):
                continue
            self.last[name] = (ts, value)
            if len(self.points) < _MAX_POINTS:
                self.points.append({"MetricName": name, "Value": value, "Timestamp": ts})
            self._pending.append(
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": "TrainingJobName", "Value": self._job}],
                    "Timestamp": ts,
                    "Value": value,
                    "StorageResolution": 60,
                }
            )

    def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self._cloudwatch.put_metric_data(Namespace=METRICS_NAMESPACE, MetricData=batch)

    def final(self) -> list[dict[str, Any]]:
        return [{"MetricName": n, "Value": v, "Timestamp": ts} for n, (ts, v) in sorted(self.last.items())]


# -- the process ---------------------------------------------------------------------------
@dataclass
class ProcessEnd:
    returncode: int | None
    reason: Outcome | None  # why the engine ended it, None if it exited by itself
    stderr_tail: list[str]


_NO_LINE: tuple[float, str, bool] = (0.0, "", False)  # marks a poll that read nothing


def _pump(pipe: Any, is_err: bool, lines: queue.Queue[tuple[float, str, bool] | None]) -> None:
    for raw in iter(pipe.readline, b""):
        lines.put((time.time(), raw.decode("utf-8", errors="replace").rstrip("\r\n"), is_err))
    pipe.close()
    lines.put(None)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass(frozen=True)
class ProcessGroup:
    """A job's process group as recorded when it started; outlives the engine in its record.

    ``start_ticks`` is the leader's start time (``/proc/<pid>/stat``, clock ticks since boot),
    so a later engine can tell the job's process from one that reused its pid; None where
    there is no ``/proc``, and then the group is never signalled after a restart.
    """

    pgid: int
    start_ticks: int | None


def _proc_stat(pid: int | str) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` from the state on (field 3), or None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return text.rpartition(")")[2].split()


def process_group_of(pid: int) -> ProcessGroup:
    """The process group a job's process ``pid`` leads (it was started in a new session)."""
    stat = _proc_stat(pid)
    return ProcessGroup(pid, int(stat[19]) if stat else None)


def _live_members(group: ProcessGroup) -> list[int]:
    """Processes of the job's group still running (zombies are over); [] if it is not the job's."""
    if group.start_ticks is None:
        return []
    leader = _proc_stat(group.pgid)
    if leader is not None and int(leader[19]) != group.start_ticks:
        return []  # the pid now belongs to another process, so the job's group is long gone
    # While any member lives the kernel does not reuse the group's id, leader or no leader.
    members = []
    for entry in Path("/proc").iterdir():
        stat = _proc_stat(entry.name) if entry.name.isdigit() else None
        if stat and int(stat[2]) == group.pgid and stat[0] != "Z" and int(stat[19]) >= group.start_ticks:
            members.append(int(entry.name))
    return members


def end_process_groups(groups: Iterable[ProcessGroup], grace_seconds: float) -> None:
    """End job process groups left running (by an engine that died): SIGTERM, grace, SIGKILL."""
    alive = [g for g in groups if _live_members(g)]
    for group in alive:
        _signal_group(group.pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [g for g in alive if _live_members(g)]
    for group in alive:
        _signal_group(group.pgid, signal.SIGKILL)


def run_process(
    command: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    control: Control,
    settings: RunSettings,
    sink: LogSink,
    metrics: MetricCollector | None,
    tick: Callable[[], None] | None = None,
    on_start: Callable[[ProcessGroup], None] | None = None,
) -> ProcessEnd:
    """Run a job's process to its end, streaming output; stop it by escalation if told to.

    ``on_start`` learns the job's process group first, so it can be ended if the engine dies.
    """
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    pgid = proc.pid
    if on_start is not None:
        try:
            on_start(process_group_of(pgid))
        except BaseException:
            _signal_group(pgid, signal.SIGKILL)
            proc.wait()
            raise
    lines: queue.Queue[tuple[float, str, bool] | None] = queue.Queue()
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, False, lines), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, True, lines), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    tail: deque[str] = deque(maxlen=20)
    batch: list[tuple[float, str]] = []
    open_pipes, reason, kill_at = 2, None, None
    last_flush = last_tick = time.monotonic()
    exited_at: float | None = None
    while open_pipes or proc.poll() is None:
        try:
            item = lines.get(timeout=0.05)
        except queue.Empty:
            item = _NO_LINE
        if item is None:
            open_pipes -= 1
        elif item is not _NO_LINE:
            ts, text, is_err = item
            batch.append((ts, text))
            if is_err and text.strip():
                tail.append(text)
            if metrics:
                metrics.feed(ts, text)
        now = time.monotonic()
        if reason is None and (why := control.check()) is not None:
            reason, kill_at = why, now + settings.stop_grace_seconds
            _signal_group(pgid, signal.SIGTERM)
        if kill_at is not None and now >= kill_at and proc.poll() is None:
            _signal_group(pgid, signal.SIGKILL)
        if proc.poll() is not None:
            # Children left behind hold the pipes open; the job is over, so they go.
            exited_at = exited_at or now
            _signal_group(pgid, signal.SIGKILL)
            if now - exited_at > 2:
                break
        if batch and (now - last_flush >= settings.log_flush_seconds or len(batch) >= 1000):
            sink.write(batch)
            batch = []
            if metrics:
                metrics.flush()
            last_flush = now
        if tick and now - last_tick >= settings.checkpoint_sync_seconds:
            tick()
            last_tick = now
    proc.wait()
    sink.write(batch)
    if metrics:
        metrics.flush()
    return ProcessEnd(proc.returncode, reason, list(tail))


def failure_reason(returncode: int | None, tail: list[str], command: list[str], failure_file: Path) -> str:
    """FailureReason as SageMaker framework containers word it; ``output/failure`` wins."""
    if failure_file.is_file():
        text = failure_file.read_text(errors="replace").strip()
        if text:
            return text[:_REASON_MAX]
    message = "\n".join(tail)[-600:]
    head = f'AlgorithmError: ExecuteUserScriptError:\nExitCode {returncode}\nErrorMessage "{message}"\n'
    return (head + f'Command "{" ".join(command)}", exit code: {returncode}')[:_REASON_MAX]


def _read_small(path: Path) -> str | None:
    if path.is_file():
        text = path.read_text(errors="replace").strip()
        return text[:_REASON_MAX] or None
    return None


# -- job runs ------------------------------------------------------------------------------
class JobRun:
    """What both job kinds share: directory, clients, logging, process and report plumbing."""

    log_group: str

    def __init__(
        self,
        request: Mapping[str, Any],
        *,
        arn: str,
        job_dir: Path,
        settings: RunSettings,
        runtime: Runtime,
        clients: Callable[[str], Any],
        control: Control,
        report: Callable[[Event], None],
        credentials_uri: str,
        token: str,
        on_process: Callable[[ProcessGroup], None] | None = None,
    ) -> None:
        self.request = request
        self.arn = arn
        self.settings = settings
        self.runtime = runtime
        self.client = clients
        self.control = control
        self.report = report
        self.credentials_uri = credentials_uri
        self.token = token
        self.on_process = on_process
        self.paths = JobPaths(job_dir, settings.mount_namespace)
        self.role_arn = str(request.get("RoleArn", ""))

    def _prepare(self, inputs: Iterable[tuple[str, str, str]]) -> RunResult | None:
        """Start from an empty job directory and download ``(S3 URI, S3DataType, container path)``
        inputs; the result to end with if the job must end meanwhile."""
        shutil.rmtree(self.paths.root, ignore_errors=True)
        self.paths.root.mkdir(parents=True)
        s3 = self.client("s3")
        for uri, data_type, container_path in inputs:
            dest = self.paths.host(container_path)
            download_s3(s3, uri, data_type, dest, self.role_arn, self.settings.region)
            if (early := self._stopped_early()) is not None:
                return early
        return None

    def _run_process(
        self, command: list[str], env: Mapping[str, str], cwd: Path, sink: LogSink, **kwargs: Any
    ) -> ProcessEnd:
        return run_process(
            self._command_prefix() + command,
            env=env,
            cwd=cwd,
            control=self.control,
            settings=self.settings,
            sink=sink,
            on_start=self.on_process,
            **kwargs,
        )

    def _sink(self, name: str) -> LogSink:
        return LogSink(self.client("logs"), self.log_group, f"{name}/{HOST}-{int(time.time())}")

    def _command_prefix(self) -> list[str]:
        return _unshare_prefix(str(self.paths.root)) if self.paths.in_namespace else []

    def _stopped_early(self) -> RunResult | None:
        why = self.control.check()
        return RunResult(why) if why else None


class TrainingRun(JobRun):
    """One attempt of a training job: download, train, upload."""

    log_group = TRAINING_LOG_GROUP

    def run(self) -> RunResult:
        req = self.request
        name = req["TrainingJobName"]
        if (early := self._prepare(self._inputs())) is not None:
            return early
        p = self.paths
        for sub in ("input/config", "input/data", "model", "output/data", "output/intermediate", "code"):
            p.host(f"{CONTAINER_ROOT}/{sub}").mkdir(parents=True, exist_ok=True)
        s3 = self.client("s3")
        channels = [c["ChannelName"] for c in req.get("InputDataConfig", [])]
        checkpoint = req.get("CheckpointConfig")
        checkpoint_dir = (
            p.host(checkpoint.get("LocalPath") or f"{CONTAINER_ROOT}/checkpoints") if checkpoint else None
        )
        if checkpoint and checkpoint_dir is not None:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(JobFailure):  # no checkpoints yet is the normal first start
                download_s3(
                    s3, checkpoint["S3Uri"], "S3Prefix", checkpoint_dir, self.role_arn, self.settings.region
                )
        hps = {k: decode_hyperparameter(v) for k, v in (req.get("HyperParameters") or {}).items()}
        command, code_dir = self._entry_point(hps, s3)
        self._write_config(hps)
        env = self._environment(hps, channels, code_dir, command)
        if (early := self._stopped_early()) is not None:
            return early
        sink = self._sink(name)
        metrics = MetricCollector(
            (req.get("AlgorithmSpecification") or {}).get("MetricDefinitions", []),
            self.client("cloudwatch"),
            name,
        )
        seen: dict[str, tuple[float, int]] = {}

        def sync_checkpoints() -> None:
            if checkpoint and checkpoint_dir is not None:
                upload_dir(s3, checkpoint_dir, checkpoint["S3Uri"], seen)

        self.report(Event.TRAIN)
        end = self._run_process(command, env, code_dir, sink, metrics=metrics, tick=sync_checkpoints)
        sync_checkpoints()
        result = RunResult(Outcome.COMPLETED, final_metrics=metrics.final(), metric_points=metrics.points)
        if end.reason is not None:
            result.outcome = end.reason
        elif end.returncode != 0:
            result.outcome = Outcome.FAILED
            result.failure_reason = failure_reason(
                end.returncode, end.stderr_tail, command, p.host(f"{CONTAINER_ROOT}/output/failure")
            )
            return result
        if result.outcome in (Outcome.COMPLETED, Outcome.STOPPED):
            if result.outcome is Outcome.COMPLETED:
                self.report(Event.UPLOAD)
            result.model_artifacts = self._upload_outputs(s3)
        return result

    def _inputs(self) -> Iterable[tuple[str, str, str]]:
        for channel in self.request.get("InputDataConfig", []):
            source = channel["DataSource"].get("S3DataSource")
            if source is None:
                raise JobFailure("ClientError: only S3 data sources are supported by the local engine")
            yield (
                source["S3Uri"],
                source["S3DataType"],
                f"{CONTAINER_ROOT}/input/data/{channel['ChannelName']}",
            )

    def _entry_point(self, hps: Mapping[str, Any], s3: Any) -> tuple[list[str], Path]:
        """The command line and working directory, found as SageMaker framework containers find them."""
        req, p = self.request, self.paths
        algo = req.get("AlgorithmSpecification") or {}
        code_dir = p.host(f"{CONTAINER_ROOT}/code")
        submit = hps.get("sagemaker_submit_directory")
        if isinstance(submit, str) and submit.startswith("s3://"):
            bucket, key = parse_s3_uri(submit)
            archive = p.root / "sourcedir.tar.gz"
            try:
                s3.download_file(bucket, key, str(archive))
            except Exception as err:
                raise JobFailure(
                    f"ClientError: cannot download sagemaker_submit_directory {submit}: {err}"
                ) from err
            try:
                extract_archive(archive, code_dir)
            except (tarfile.TarError, OSError) as err:
                raise JobFailure(f"ClientError: cannot extract {submit}: {err}") from err
        channel_code = p.host(f"{CONTAINER_ROOT}/input/data/code")
        if not any(code_dir.iterdir()) and channel_code.is_dir():
            code_dir = channel_code
        user_args = to_cmd_args({k: v for k, v in hps.items() if not k.startswith("sagemaker_")})
        if algo.get("ContainerEntrypoint"):
            entry = [p.rewrite(a) for a in algo["ContainerEntrypoint"]]
            args = [p.rewrite(a) for a in algo.get("ContainerArguments", [])]
            return python_command(entry, self.runtime) + args, code_dir if any(code_dir.iterdir()) else p.root
        program = (req.get("Environment") or {}).get("SAGEMAKER_PROGRAM") or hps.get("sagemaker_program")
        if not program:
            scripts = sorted(code_dir.glob("*.py"))
            program = scripts[0].name if len(scripts) == 1 else None
        if not program:
            raise JobFailure(
                "AlgorithmError: no entry point: set SAGEMAKER_PROGRAM in Environment, the sagemaker_program "
                "hyperparameter (with sagemaker_submit_directory or a 'code' channel), or ContainerEntrypoint"
            )
        script = _safe_join(code_dir, str(program))
        if not script.is_file():
            raise JobFailure(f"AlgorithmError: entry point {program} not found in the job's code")
        if script.suffix == ".py":
            return [self.runtime.python, str(script), *user_args], code_dir
        if script.suffix == ".sh":
            return ["sh", str(script), *user_args], code_dir
        return [str(script), *user_args], code_dir

    def _resource_config(self) -> dict[str, Any]:
        instance = (self.request.get("ResourceConfig") or {}).get("InstanceType", "local")
        return {
            "current_host": HOST,
            "current_instance_type": instance,
            "current_group_name": "homogeneousCluster",
            "hosts": [HOST],
            "instance_groups": [
                {"instance_group_name": "homogeneousCluster", "instance_type": instance, "hosts": [HOST]}
            ],
            "network_interface_name": "eth0",
        }

    def _input_data_config(self) -> dict[str, Any]:
        return {
            c["ChannelName"]: {
                "TrainingInputMode": c.get("InputMode")
                or (self.request.get("AlgorithmSpecification") or {}).get("TrainingInputMode", "File"),
                "S3DistributionType": c["DataSource"]
                .get("S3DataSource", {})
                .get("S3DataDistributionType", "FullyReplicated"),
                "RecordWrapperType": c.get("RecordWrapperType", "None"),
            }
            for c in self.request.get("InputDataConfig", [])
        }

    def _write_config(self, hps: Mapping[str, Any]) -> None:
        cfg = self.paths.host(f"{CONTAINER_ROOT}/input/config")
        raw = self.request.get("HyperParameters") or {}
        (cfg / "hyperparameters.json").write_text(json.dumps(raw))
        (cfg / "resourceconfig.json").write_text(json.dumps(self._resource_config()))
        (cfg / "inputdataconfig.json").write_text(json.dumps(self._input_data_config()))
        if self.request.get("CheckpointConfig"):
            (cfg / "checkpointconfig.json").write_text(json.dumps(self.request["CheckpointConfig"]))

    def _environment(
        self, hps: Mapping[str, Any], channels: list[str], code_dir: Path, command: list[str]
    ) -> dict[str, str]:
        """The sagemaker-training toolkit's environment (SM_*), TRAINING_JOB_NAME/ARN and AWS."""
        req, p = self.request, self.paths
        env = base_environment(
            self.settings, self.runtime, req.get("Environment") or {}, self.credentials_uri, self.token
        )
        v = p.visible
        user_hps = {k: val for k, val in hps.items() if not k.startswith("sagemaker_")}
        framework = {k: val for k, val in hps.items() if k.startswith("sagemaker_")}
        program = str(
            framework.get("sagemaker_program") or (req.get("Environment") or {}).get("SAGEMAKER_PROGRAM", "")
        )
        channel_dirs = {c: v(f"{CONTAINER_ROOT}/input/data/{c}") for c in channels}
        instance = (req.get("ResourceConfig") or {}).get("InstanceType", "local")
        code_visible = (
            v(f"{CONTAINER_ROOT}/{code_dir.relative_to(p.root).as_posix()}")
            if p.in_namespace
            else str(code_dir)
        )
        training_env: dict[str, Any] = {
            "additional_framework_parameters": {},
            "channel_input_dirs": channel_dirs,
            "current_host": HOST,
            "current_instance_type": instance,
            "framework_module": None,
            "hosts": [HOST],
            "hyperparameters": user_hps,
            "input_config_dir": v(f"{CONTAINER_ROOT}/input/config"),
            "input_data_config": self._input_data_config(),
            "input_dir": v(f"{CONTAINER_ROOT}/input"),
            "is_master": True,
            "job_name": req["TrainingJobName"],
            "log_level": 20,
            "master_hostname": HOST,
            "model_dir": v(f"{CONTAINER_ROOT}/model"),
            "module_dir": str(framework.get("sagemaker_submit_directory", code_visible)),
            "module_name": PurePosixPath(program).stem,
            "network_interface_name": "eth0",
            "num_cpus": os.cpu_count() or 1,
            "num_gpus": 0,
            "num_neurons": 0,
            "output_data_dir": v(f"{CONTAINER_ROOT}/output/data"),
            "output_dir": v(f"{CONTAINER_ROOT}/output"),
            "output_intermediate_dir": v(f"{CONTAINER_ROOT}/output/intermediate"),
            "resource_config": self._resource_config(),
            "user_entry_point": program,
        }
        env.update(
            {f"SM_{_env_name(k)}": _env_value(val) for k, val in training_env.items() if val is not None}
        )
        env.update({f"SM_CHANNEL_{_env_name(c)}": d for c, d in channel_dirs.items()})
        env.update({f"SM_HP_{_env_name(k)}": _env_value(val) for k, val in user_hps.items()})
        env.update(
            {
                "SM_CHANNELS": json.dumps(sorted(channels)),
                "SM_HPS": json.dumps(user_hps, sort_keys=True),
                "SM_USER_ARGS": json.dumps(to_cmd_args(user_hps)),
                "SM_FRAMEWORK_PARAMS": json.dumps({}),
                "SM_TRAINING_ENV": json.dumps(training_env, sort_keys=True),
                "TRAINING_JOB_NAME": req["TrainingJobName"],
                "TRAINING_JOB_ARN": self.arn,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(code_dir), env.get("PYTHONPATH")])),
            }
        )
        return env

    def _upload_outputs(self, s3: Any) -> str:
        """model.tar.gz and output.tar.gz to <S3OutputPath>/<job>/output/; returns the model URI."""
        out = self.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        base = f"{out}/{self.request['TrainingJobName']}/output"
        p = self.paths
        scratch = p.root / ".upload"
        try:
            upload_tar(s3, p.host(f"{CONTAINER_ROOT}/model"), f"{base}/model.tar.gz", scratch)
            upload_tar(s3, p.host(f"{CONTAINER_ROOT}/output/data"), f"{base}/output.tar.gz", scratch)
        except JobFailure:
            raise
        except Exception as err:
            raise JobFailure(f"ClientError: cannot upload the model to {base}: {err}") from err
        return f"{base}/model.tar.gz"


# -- processing ----------------------------------------------------------------------------
class ProcessingRun(JobRun):
    """A processing job: inputs, the container entry point, outputs."""

    log_group = PROCESSING_LOG_GROUP

    def run(self) -> RunResult:
        req = self.request
        name = req["ProcessingJobName"]
        if (early := self._prepare(self._inputs())) is not None:
            return early
        p = self.paths
        s3 = self.client("s3")
        outputs = [
            o for o in (req.get("ProcessingOutputConfig") or {}).get("Outputs", []) if o.get("S3Output")
        ]
        for item in outputs:
            p.host(item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        self._write_config()
        app = req["AppSpecification"]
        entry = app.get("ContainerEntrypoint") or []
        if not entry:
            raise JobFailure("ClientError: the local engine needs AppSpecification.ContainerEntrypoint")
        command = python_command([p.rewrite(a) for a in entry], self.runtime) + [
            p.rewrite(a) for a in app.get("ContainerArguments", [])
        ]
        user_env = {k: p.rewrite(val) for k, val in (req.get("Environment") or {}).items()}
        env = base_environment(self.settings, self.runtime, user_env, self.credentials_uri, self.token)
        env["PROCESSING_JOB_ARN"] = self.arn
        seen: dict[str, dict[str, tuple[float, int]]] = {o["OutputName"]: {} for o in outputs}

        def sync_continuous() -> None:
            for item in outputs:
                if item["S3Output"].get("S3UploadMode") == "Continuous":
                    out = item["S3Output"]
                    upload_dir(s3, p.host(out["LocalPath"]), out["S3Uri"], seen[item["OutputName"]])

        end = self._run_process(command, env, p.root, self._sink(name), metrics=None, tick=sync_continuous)
        message = _read_small(p.host(f"{CONTAINER_ROOT}/output/message"))
        if end.reason is not None:
            return RunResult(end.reason, exit_message=message)
        if end.returncode != 0:
            tail = "\n".join(end.stderr_tail)[-_REASON_MAX:]
            last = end.stderr_tail[-1] if end.stderr_tail else "no output on stderr"
            reason = f"AlgorithmError: ExitCode {end.returncode}: {last}; see job logs for more information"
            return RunResult(
                Outcome.FAILED, failure_reason=reason[:_REASON_MAX], exit_message=message or tail or None
            )
        artifacts: dict[str, dict[str, str]] = {}
        for item in outputs:
            out = item["S3Output"]
            try:
                upload_dir(s3, p.host(out["LocalPath"]), out["S3Uri"], seen[item["OutputName"]])
            except Exception as err:
                raise JobFailure(
                    f"ClientError: cannot upload output {item['OutputName']} to {out['S3Uri']}: {err}"
                ) from err
            artifacts[item["OutputName"]] = {"Value": out["S3Uri"]}
        return RunResult(Outcome.COMPLETED, exit_message=message, output_artifacts=artifacts)

    def _inputs(self) -> Iterable[tuple[str, str, str]]:
        for item in self.request.get("ProcessingInputs", []):
            source = item.get("S3Input")
            if source is None:
                raise JobFailure("ClientError: only S3 processing inputs are supported by the local engine")
            if source.get("S3InputMode", "File") != "File":
                raise JobFailure("ClientError: only File input mode is supported by the local engine")
            if source.get("S3CompressionType", "None") != "None":
                raise JobFailure("ClientError: S3CompressionType Gzip is not supported by the local engine")
            yield source["S3Uri"], source["S3DataType"], source["LocalPath"]

    def _write_config(self) -> None:
        """Write /opt/ml/config/processingjobconfig.json (the SDK reads its ProcessingJobArn)."""
        cfg = self.paths.host(f"{CONTAINER_ROOT}/config")
        cfg.mkdir(parents=True, exist_ok=True)
        body = {k: v for k, v in self.request.items() if k != "Tags"}
        body["ProcessingJobArn"] = self.arn
        (cfg / "processingjobconfig.json").write_text(json.dumps(body))
        (cfg / "resourceconfig.json").write_text(json.dumps({"current_host": HOST, "hosts": [HOST]}))
