"""The SageMaker container contract of a local job: the ``/opt/ml`` paths and the environment.

Directory contract: each job gets a directory laid out like a SageMaker container's ``/opt/ml``
(``input/config``, ``input/data/<channel>``, ``model``, ``output/data``, ``output/failure``,
``checkpoints``, ``code``, ``config``, ``processing/...``). A container path ``/opt/ml/<rest>``
means ``<job dir>/<rest>``.

Scripts that hard-code ``/opt/ml`` (and the SageMaker SDK, which reads
``/opt/ml/config/processingjobconfig.json`` at a fixed path) see their job directory there when
the OS allows private namespaces: the job runs under ``unshare`` in its own mount namespace,
with its job directory bind-mounted at ``/opt/ml`` for that process tree only, and in its own
PID namespace with its own ``/proc``, so it sees its own processes and no other (not the
engine's, whose environment it could otherwise read), and ending the namespace's first process
(:mod:`jobinit`) ends every process of the job. That needs root or user namespaces (``unshare
--map-root-user``) and an ``/opt/ml`` mount point, which the engine creates when it may. Where
that is not possible the engine rewrites paths instead, with one rule: an argument or an
environment value that is ``/opt/ml``, starts with ``/opt/ml/``, or has the form
``name=/opt/ml/...`` is rewritten to the job directory; paths a script builds itself are not,
so there the SDK's ``load_run()`` inside a processing job cannot find its job (training jobs
are unaffected: the SDK reads ``TRAINING_JOB_ARN``); and the job's first process stays a child
subreaper that ends the job's descendants (see :mod:`jobinit`), while the job can see the
machine's other processes in ``/proc``.

The environment is the sagemaker-training toolkit's (``SM_*``), built on an allowlist of the
engine's own environment with the engine as the job's AWS.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_sm_provider.local import jobinit
from airflow_sm_provider.local.control import RunSettings
from airflow_sm_provider.local.errors import JobFailure
from airflow_sm_provider.local.runtimes import Runtime

CONTAINER_ROOT = "/opt/ml"
HOST = "algo-1"
#: The only variables of the engine's own environment a job inherits. PYTHONPATH is not one:
#: the host's would put the engine's modules first in every runtime; a runtime that needs it
#: sets it in its ``env``.
HOST_ENV_ALLOWED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"})


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
def namespaces_available() -> bool:
    """Whether a job can get private mount and PID namespaces with its directory at /opt/ml."""
    if not sys.platform.startswith("linux") or not shutil.which("unshare") or not shutil.which("mount"):
        return False
    try:
        os.makedirs(CONTAINER_ROOT, exist_ok=True)
    except OSError:
        return False
    with tempfile.TemporaryDirectory() as probe:
        Path(probe, "probe").write_text("ok")
        # In the namespace the probe is PID 1 and its /proc lists only itself.
        check = f'cat {CONTAINER_ROOT}/probe; echo " $$"; ls /proc | grep -c "^[0-9]"'
        try:
            out = subprocess.run(
                [*namespace_prefix(probe), "sh", "-c", check],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        words = out.stdout.split()
        return out.returncode == 0 and words[:2] == [b"ok", b"1"] and words[2:3] in ([b"1"], [b"2"], [b"3"])


def namespace_prefix(job_dir: str) -> list[str]:
    """Command prefix that runs the rest of the command in new mount and PID namespaces, with
    ``job_dir`` bind-mounted at /opt/ml and a ``/proc`` of the new PID namespace.

    ``--kill-child`` ends the namespace if ``unshare`` itself is killed.
    """
    user_ns = [] if os.geteuid() == 0 else ["--map-root-user"]
    script = f'mount --bind "$0" {CONTAINER_ROOT} && exec "$@"'
    return [
        "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc",
        "--kill-child=SIGKILL", *user_ns, "sh", "-c", script, job_dir,
    ]  # fmt: skip


def init_prefix(grace_seconds: float) -> list[str]:
    """Command prefix that runs the rest under :mod:`jobinit`, the job's first process."""
    # -I -S: no environment, no site-packages: jobinit needs the standard library only.
    return [sys.executable, "-I", "-S", str(Path(jobinit.__file__)), f"{grace_seconds:g}"]


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


# -- training: config files and the sagemaker-training toolkit's environment ---------------
def resource_config(request: Mapping[str, Any]) -> dict[str, Any]:
    """``resourceconfig.json`` of a training job: one host, ``algo-1``."""
    instance = (request.get("ResourceConfig") or {}).get("InstanceType", "local")
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


def input_data_config(request: Mapping[str, Any]) -> dict[str, Any]:
    """``inputdataconfig.json`` of a training job: each channel's input mode and distribution."""
    return {
        c["ChannelName"]: {
            "TrainingInputMode": c.get("InputMode")
            or (request.get("AlgorithmSpecification") or {}).get("TrainingInputMode", "File"),
            "S3DistributionType": c["DataSource"]
            .get("S3DataSource", {})
            .get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": c.get("RecordWrapperType", "None"),
        }
        for c in request.get("InputDataConfig", [])
    }


def write_training_config(request: Mapping[str, Any], paths: JobPaths) -> None:
    """Write ``/opt/ml/input/config``: hyperparameters, resource, input data and checkpoint config."""
    cfg = paths.host(f"{CONTAINER_ROOT}/input/config")
    raw = request.get("HyperParameters") or {}
    (cfg / "hyperparameters.json").write_text(json.dumps(raw))
    (cfg / "resourceconfig.json").write_text(json.dumps(resource_config(request)))
    (cfg / "inputdataconfig.json").write_text(json.dumps(input_data_config(request)))
    if request.get("CheckpointConfig"):
        (cfg / "checkpointconfig.json").write_text(json.dumps(request["CheckpointConfig"]))


def training_environment(
    request: Mapping[str, Any],
    paths: JobPaths,
    base: Mapping[str, str],
    hps: Mapping[str, Any],
    channels: list[str],
    code_dir: Path,
    arn: str,
) -> dict[str, str]:
    """``base`` plus the toolkit's environment (SM_*) and TRAINING_JOB_NAME/ARN."""
    env = dict(base)
    v = paths.visible
    user_hps = {k: val for k, val in hps.items() if not k.startswith("sagemaker_")}
    framework = {k: val for k, val in hps.items() if k.startswith("sagemaker_")}
    program = str(
        framework.get("sagemaker_program") or (request.get("Environment") or {}).get("SAGEMAKER_PROGRAM", "")
    )
    channel_dirs = {c: v(f"{CONTAINER_ROOT}/input/data/{c}") for c in channels}
    instance = (request.get("ResourceConfig") or {}).get("InstanceType", "local")
    code_visible = (
        v(f"{CONTAINER_ROOT}/{code_dir.relative_to(paths.root).as_posix()}")
        if paths.in_namespace
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
        "input_data_config": input_data_config(request),
        "input_dir": v(f"{CONTAINER_ROOT}/input"),
        "is_master": True,
        "job_name": request["TrainingJobName"],
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
        "resource_config": resource_config(request),
        "user_entry_point": program,
    }
    env.update({f"SM_{_env_name(k)}": _env_value(val) for k, val in training_env.items() if val is not None})
    env.update({f"SM_CHANNEL_{_env_name(c)}": d for c, d in channel_dirs.items()})
    env.update({f"SM_HP_{_env_name(k)}": _env_value(val) for k, val in user_hps.items()})
    env.update(
        {
            "SM_CHANNELS": json.dumps(sorted(channels)),
            "SM_HPS": json.dumps(user_hps, sort_keys=True),
            "SM_USER_ARGS": json.dumps(to_cmd_args(user_hps)),
            "SM_FRAMEWORK_PARAMS": json.dumps({}),
            "SM_TRAINING_ENV": json.dumps(training_env, sort_keys=True),
            "TRAINING_JOB_NAME": request["TrainingJobName"],
            "TRAINING_JOB_ARN": arn,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(code_dir), env.get("PYTHONPATH")])),
        }
    )
    return env


# -- processing ----------------------------------------------------------------------------
def write_processing_config(request: Mapping[str, Any], paths: JobPaths, arn: str) -> None:
    """Write /opt/ml/config/processingjobconfig.json (the SDK reads its ProcessingJobArn)."""
    cfg = paths.host(f"{CONTAINER_ROOT}/config")
    cfg.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in request.items() if k != "Tags"}
    body["ProcessingJobArn"] = arn
    (cfg / "processingjobconfig.json").write_text(json.dumps(body))
    (cfg / "resourceconfig.json").write_text(json.dumps({"current_host": HOST, "hosts": [HOST]}))
