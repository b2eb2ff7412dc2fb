"""Running one training or processing job as a local subprocess: the job runs.

A run lays out the job directory (:mod:`container`), downloads its inputs and uploads its
outputs (:mod:`transfer`), runs its process (:mod:`process`) with output to CloudWatch
(:mod:`cloudwatch`), and returns a :class:`RunResult`. What the engine can run is decided when
the job is created (:mod:`rules`); a run does not check the request again.

The runner reports progress through a callback with lifecycle events; it never writes job
records itself.
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from airflow_sm_provider.local.cloudwatch import (
    PROCESSING_LOG_GROUP,
    TRAINING_LOG_GROUP,
    LogSink,
    MetricCollector,
)
from airflow_sm_provider.local.container import (
    CONTAINER_ROOT,
    HOST,
    JobPaths,
    base_environment,
    decode_hyperparameter,
    init_prefix,
    is_container_path,
    namespace_prefix,
    python_command,
    to_cmd_args,
    training_environment,
    write_processing_config,
    write_training_config,
)
from airflow_sm_provider.local.control import Control, EndReason, RunResult, RunSettings
from airflow_sm_provider.local.errors import JobFailure
from airflow_sm_provider.local.lifecycle import Event
from airflow_sm_provider.local.mlflow_backend import JOB_ENVIRONMENT_KEY as MLFLOW_ENVIRONMENT
from airflow_sm_provider.local.process import ProcessEnd, ProcessGroup, run_process
from airflow_sm_provider.local.runtimes import Runtime, python_notes
from airflow_sm_provider.local.transfer import (
    download_s3,
    extract_archive,
    parse_s3_uri,
    safe_join,
    upload_dir,
    upload_tar,
)

_REASON_MAX = 1024


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
        self._log: LogSink | None = None
        self._skipped: set[str] = set()  # paths already named in the log as not uploaded

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
        self._log = LogSink(self.client("logs"), self.log_group, f"{name}/{HOST}-{int(time.time())}")
        return self._log

    def _upload_dir(self, s3: Any, src: Path, uri: str, seen: dict[str, tuple[float, int]]) -> None:
        self._note_skipped(src, upload_dir(s3, src, uri, seen, root=self.paths.root))

    def _upload_tar(self, s3: Any, src: Path, uri: str) -> None:
        self._note_skipped(src, upload_tar(s3, src, uri, self.paths.root / ".upload", root=self.paths.root))

    def _note_skipped(self, src: Path, skipped: list[str]) -> None:
        """Name in the job's log, once each, what an upload left out (links, non-files)."""
        where = src.relative_to(self.paths.root).as_posix()
        new = [path for rel in skipped if (path := f"{where}/{rel}") not in self._skipped]
        self._skipped.update(new)
        if new and self._log is not None:
            note = "[local engine] not uploaded, a symbolic link or not a regular file: "
            self._log.write([(time.time(), note + path) for path in new])

    def _note_python(self, image: str, command: list[str], cwd: Path) -> None:
        """Say in the job's log when the interpreter is not the image's Python, and what the entry
        point (the command's first ``.py``) uses that the image's Python lacks."""
        script = next((arg for arg in command[1:] if arg.endswith(".py")), None)
        path = None
        if script is not None:
            path = self.paths.host(script) if is_container_path(script) else cwd / script
        notes = python_notes(image, self.runtime, path)
        if notes and self._log is not None:
            self._log.write([(time.time(), note) for note in notes])

    def _command_prefix(self) -> list[str]:
        """The job's own namespaces where the OS allows, then its first process (:mod:`jobinit`)."""
        namespaces = namespace_prefix(str(self.paths.root)) if self.paths.in_namespace else []
        return namespaces + init_prefix(self.settings.stop_grace_seconds)

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
        write_training_config(req, p)
        # The job's MLflow run (MlflowConfig, see mlflow_backend) after its own Environment.
        user_env = {**(req.get("Environment") or {}), **(req.get(MLFLOW_ENVIRONMENT) or {})}
        base = base_environment(self.settings, self.runtime, user_env, self.credentials_uri, self.token)
        env = training_environment(req, p, base, hps, channels, code_dir, self.arn)
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
                self._upload_dir(s3, checkpoint_dir, checkpoint["S3Uri"], seen)

        self._note_python(
            (req.get("AlgorithmSpecification") or {}).get("TrainingImage", ""), command, code_dir
        )
        self.report(Event.TRAIN)
        end = self._run_process(command, env, code_dir, sink, metrics=metrics, tick=sync_checkpoints)
        sync_checkpoints()
        result = RunResult(EndReason.COMPLETED, final_metrics=metrics.final(), metric_points=metrics.points)
        if end.reason is not None:
            result.outcome = end.reason
        elif end.returncode != 0:
            result.outcome = EndReason.FAILED
            result.failure_reason = failure_reason(
                end.returncode, end.stderr_tail, command, p.host(f"{CONTAINER_ROOT}/output/failure")
            )
            return result
        if result.outcome in (EndReason.COMPLETED, EndReason.STOPPED):
            if result.outcome is EndReason.COMPLETED:
                self.report(Event.UPLOAD)
            result.model_artifacts = self._upload_outputs(s3)
        return result

    def _inputs(self) -> Iterable[tuple[str, str, str]]:
        for channel in self.request.get("InputDataConfig", []):
            source = channel["DataSource"]["S3DataSource"]
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
        script = safe_join(code_dir, str(program))
        if not script.is_file():
            raise JobFailure(f"AlgorithmError: entry point {program} not found in the job's code")
        if script.suffix == ".py":
            return [self.runtime.python, str(script), *user_args], code_dir
        if script.suffix == ".sh":
            return ["sh", str(script), *user_args], code_dir
        return [str(script), *user_args], code_dir

    def _upload_outputs(self, s3: Any) -> str:
        """model.tar.gz and output.tar.gz to <S3OutputPath>/<job>/output/; returns the model URI."""
        out = self.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        base = f"{out}/{self.request['TrainingJobName']}/output"
        p = self.paths
        try:
            self._upload_tar(s3, p.host(f"{CONTAINER_ROOT}/model"), f"{base}/model.tar.gz")
            self._upload_tar(s3, p.host(f"{CONTAINER_ROOT}/output/data"), f"{base}/output.tar.gz")
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
        write_processing_config(req, p, self.arn)
        app = req["AppSpecification"]
        entry = app["ContainerEntrypoint"]
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
                    self._upload_dir(s3, p.host(out["LocalPath"]), out["S3Uri"], seen[item["OutputName"]])

        sink = self._sink(name)
        self._note_python(app.get("ImageUri", ""), command, p.root)
        end = self._run_process(command, env, p.root, sink, metrics=None, tick=sync_continuous)
        message = _read_small(p.host(f"{CONTAINER_ROOT}/output/message"))
        if end.reason is not None:
            return RunResult(end.reason, exit_message=message)
        if end.returncode != 0:
            tail = "\n".join(end.stderr_tail)[-_REASON_MAX:]
            last = end.stderr_tail[-1] if end.stderr_tail else "no output on stderr"
            reason = f"AlgorithmError: ExitCode {end.returncode}: {last}; see job logs for more information"
            return RunResult(
                EndReason.FAILED, failure_reason=reason[:_REASON_MAX], exit_message=message or tail or None
            )
        artifacts: dict[str, dict[str, str]] = {}
        for item in outputs:
            out = item["S3Output"]
            try:
                self._upload_dir(s3, p.host(out["LocalPath"]), out["S3Uri"], seen[item["OutputName"]])
            except JobFailure:
                raise
            except Exception as err:
                raise JobFailure(
                    f"ClientError: cannot upload output {item['OutputName']} to {out['S3Uri']}: {err}"
                ) from err
            artifacts[item["OutputName"]] = {"Value": out["S3Uri"]}
        return RunResult(EndReason.COMPLETED, exit_message=message, output_artifacts=artifacts)

    def _inputs(self) -> Iterable[tuple[str, str, str]]:
        for item in self.request.get("ProcessingInputs", []):
            source = item["S3Input"]
            yield source["S3Uri"], source["S3DataType"], source["LocalPath"]
