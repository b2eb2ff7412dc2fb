"""Waiting cost on N running jobs: API calls per poll and worker slots, ours vs the Amazon provider's.

    python -m benchmarks --only waiting_cost     (--quick: 1 and 3 jobs)

For N = 1, 10, 100 and 250, starts N training jobs and N processing jobs (names as the operators
make them) on a local engine that runs one job at a time, so all but one stay InProgress. Then
three ways of waiting on them are driven for real against the engine, and the HTTP requests
that reach the engine are counted there (a counting layer in front of its WSGI application,
so every service counts: SageMaker and CloudWatch Logs alike):

- ``ours``: one :class:`~airflow_sm_provider.triggers.jobs.JobStatusTrigger` for all N jobs
  (what the deferred ``JobSensor`` hands the triggerer), run until its first poll is done;
- ``amazon_poke``: N ``SageMakerTrainingSensor`` / ``SageMakerProcessingSensor`` (poke mode,
  its default), each poked twice; the second poke is the steady state (the first also sets up
  log tailing). A poke-mode sensor holds a worker slot for the whole wait;
- ``amazon_deferrable``: ``SageMakerTrigger`` (what the deferrable ``SageMakerTrainingOperator``
  / ``SageMakerProcessingOperator`` defer to: one trigger per job, 0 worker slots), up to 10
  of them run on one event loop until each has made its first attempt, their calls scaled
  to N (each builds its own client, about a second apiece here; each attempt is one Describe).

Calls per hour follow from each one's poll schedule for a job of an hour or more: ours is
``status_poll.poll_delay`` from the sensor's defaults (``poke_interval`` 60 s, growing to
``max_poll_interval`` 600 s, first poll 10 s after deferring), the poke sensor's
``poke_interval`` default (60 s) and the trigger's ``waiter_delay`` default (30 s, read from the
operator's ``check_interval``; by default it gives up after ``max_attempts``, 60, so a job of
more than 30 minutes fails the task: its hour is counted with ``max_attempts`` raised).
Target: ceil(N/100) listing calls per poll, 0 worker slots.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import math
import os
import random
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from benchmarks.harness import Settings, benchmark, cpu_timed, row, times

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
SIZES = (1, 10, 100, 250)
QUICK_SIZES = (1, 3)
#: Amazon triggers actually run per size; their calls are scaled to N (one Describe each).
TRIGGER_SAMPLE = 10
HOUR = 3600.0


#: Every waiting client is built with this app id in its User-Agent, so the count leaves out the
#: engine's own traffic (its jobs' log shipping goes through the same port).
APP_ID = "waiting-cost-benchmark"
BOTOCORE_CONFIG = {"user_agent_appid": APP_ID}
#: The Amazon sensor tails the job's log with a logs client built without that config; the
#: engine itself only writes logs, so reads are the sensor's.
LOG_READS = frozenset({"DescribeLogStreams", "GetLogEvents"})


class RequestCounter:
    """WSGI middleware counting the waiting clients' requests by operation (``X-Amz-Target``)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        tagged = f"app/{APP_ID}" in environ.get("HTTP_USER_AGENT", "")
        if tagged or operation in LOG_READS:
            with self._lock:
                self.calls[operation or f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO')}"] += 1
        return self.app(environ, start_response)

    def take(self) -> dict[str, int]:
        """The counts since the last call, and start again from zero."""
        with self._lock:
            counts, self.calls = dict(self.calls), Counter()
        return counts


def count_at_engine(engine: Any) -> RequestCounter:
    """Put a counter in front of a running engine's application (werkzeug reads ``server.app``
    per request); the engine has no public hook for it, so this reaches into its server."""
    counter = RequestCounter(engine._server.app)
    engine._server.app = counter
    return counter


def code_archive(s3: Any, bucket: str) -> str:
    """A training script that sleeps for ten minutes, as ``sourcedir.tar.gz`` in S3."""
    buf = io.BytesIO()
    data = b"import time\ntime.sleep(600)\n"
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket=bucket, Key="code.tar.gz", Body=buf.getvalue())
    return f"s3://{bucket}/code.tar.gz"


def job_configs(bucket: str, code: str) -> dict[str, dict[str, Any]]:
    """A Create request per job kind, as a DAG would pass them to the operators."""
    resources = {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5}
    return {
        "training": {
            "TrainingJobName": "bench-candidate",
            "RoleArn": ROLE,
            "AlgorithmSpecification": {"TrainingImage": "local/python:3", "TrainingInputMode": "File"},
            "HyperParameters": {"sagemaker_program": "train.py", "sagemaker_submit_directory": code},
            "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/models"},
            "ResourceConfig": resources,
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
        "processing": {
            "ProcessingJobName": "bench-preprocess",
            "RoleArn": ROLE,
            "AppSpecification": {"ImageUri": "local/python:3", "ContainerEntrypoint": ["sleep", "600"]},
            "ProcessingResources": {"ClusterConfig": resources},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
    }


# ------------------------------------------------------------------ the three ways of waiting


async def _ours_first_poll(names: list[str], kind: str) -> None:
    """Run our trigger until its first poll has been answered (then it would sleep)."""
    from airflow_sm_provider.triggers.jobs import JobStatusTrigger

    trigger = JobStatusTrigger(
        [{"kind": kind, "name": name} for name in names],
        aws_conn_id=None,
        botocore_config=BOTOCORE_CONFIG,
        poll_interval=HOUR,
        min_first_poll=0,
    )
    task = asyncio.ensure_future(_drain(trigger.run()))
    while trigger._unfinished is None and not task.done():  # set once a poll has been read
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if trigger._unfinished is None:
        raise RuntimeError("our trigger ended before its first poll was read")


async def _amazon_triggers_first_attempt(names: list[str], kind: str, counter: RequestCounter) -> None:
    """Run one Amazon ``SageMakerTrigger`` per job until each has described its job once."""
    from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

    describe = "DescribeTrainingJob" if kind == "training" else "DescribeProcessingJob"
    triggers = [
        SageMakerTrigger(
            job_name=name,
            job_type=kind.title(),
            waiter_delay=int(HOUR),
            waiter_max_attempts=2,
            aws_conn_id=None,
            botocore_config=BOTOCORE_CONFIG,
        )
        for name in names
    ]
    tasks = [asyncio.ensure_future(_drain(trigger.run())) for trigger in triggers]
    deadline = time.monotonic() + 300
    while counter.calls[describe] < len(names) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _drain(events: Any) -> None:
    async for _ in events:
        return


def _amazon_sensors(names: list[str], kind: str) -> list[Any]:
    from airflow.providers.amazon.aws.sensors.sagemaker import (
        SageMakerProcessingSensor,
        SageMakerTrainingSensor,
    )

    sensor = SageMakerTrainingSensor if kind == "training" else SageMakerProcessingSensor
    sensors = [
        sensor(task_id=f"wait_{i}", job_name=name, aws_conn_id=None, botocore_config=BOTOCORE_CONFIG)
        for i, name in enumerate(names)
    ]
    # In a deployment each sensor builds its own clients in its own worker; here they share the
    # first one's hook (building 250 boto3 clients would take minutes and send no request).
    for other in sensors[1:]:
        other.__dict__["hook"] = sensors[0].hook
    return sensors


# ------------------------------------------------------------------ schedules


def polls_in(seconds: float, delays: Iterable[float]) -> int:
    """How many polls a schedule of delays makes in the first ``seconds`` (the first at ``delays[0]``)."""
    clock, count = 0.0, 0
    for delay in delays:
        clock += delay
        if clock > seconds:
            return count
        count += 1
    return count


def our_schedule(rng: random.Random | None = None) -> Iterator[float]:
    """Delays between our trigger's polls with the sensor's defaults (first poll 10 s after
    deferring, then ``poll_delay`` between 60 and 600 s); jittered only when ``rng`` is given."""
    from airflow_sm_provider.status_poll import JITTER, poll_delay

    clock = 10.0
    yield clock
    while True:
        delay = poll_delay(clock, 60.0, 600.0, jitter=JITTER if rng else 0, rng=rng)
        clock += delay
        yield delay


def amazon_defaults() -> dict[str, float]:
    """The Amazon provider's own defaults, read from its classes rather than copied here."""
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator
    from airflow.providers.amazon.aws.sensors.sagemaker import SageMakerTrainingSensor

    operator = SageMakerTrainingOperator(task_id="operator", config={}, aws_conn_id=None)
    sensor = SageMakerTrainingSensor(task_id="sensor", job_name="defaults", aws_conn_id=None)
    return {
        "poke_interval_s": float(sensor.poke_interval),
        "waiter_delay_s": float(operator.check_interval),
        "max_attempts": operator.max_attempts,
    }


def every(delay: float, first: float | None = None) -> Iterator[float]:
    """A fixed schedule: the first poll after ``first`` (default ``delay``), then every ``delay``."""
    yield delay if first is None else first
    yield from itertools.repeat(delay)


# ------------------------------------------------------------------ the benchmark


@benchmark("waiting_cost", "waiting on N jobs: calls per poll and worker slots, ours vs the Amazon provider")
def waiting_cost(settings: Settings) -> dict[str, Any]:
    from airflow_sm_provider.local import LocalEngine

    sizes = QUICK_SIZES if settings.quick else SIZES
    saved = dict(os.environ)
    try:
        with LocalEngine(max_concurrent_jobs=1) as engine:
            os.environ.update(engine.environ())
            measured = _measure(engine, count_at_engine(engine), sizes)
    finally:  # the engine is gone: later benchmarks must not reach for it
        os.environ.clear()
        os.environ.update(saved)
    defaults = amazon_defaults()
    ours_polls = polls_in(HOUR, our_schedule())
    poke_polls = polls_in(HOUR, every(defaults["poke_interval_s"], first=0.0))
    # By default it gives up after max_attempts (30 min; the task fails): an hour-long wait needs
    # max_attempts raised, and then it polls all hour at its waiter_delay.
    trigger_polls = polls_in(HOUR, every(defaults["waiter_delay_s"], first=0.0))
    rows = []
    for m in measured.values():
        m["first_hour"] = {
            "ours_polls": ours_polls,
            "ours_calls": ours_polls * m["ours"]["calls"],
            "amazon_poke_polls": poke_polls,
            "amazon_poke_calls": poke_polls * m["amazon_poke"]["calls"],
            "amazon_deferrable_polls": trigger_polls,
            "amazon_deferrable_calls": trigger_polls * m["amazon_deferrable"]["calls"],
        }
        n, hour = m["jobs"], m["first_hour"]
        listing = m["ours"]["listing_calls"]
        met = listing <= math.ceil(n / 100) and m["ours"]["calls"] == listing
        rows.append(
            row(
                f"Waiting cost, {n} running {m['kind']} job(s): calls per poll (first hour), worker slots",
                f"{m['ours']['calls']} ({hour['ours_calls']:,}), 0 slots",
                f"poke sensors {m['amazon_poke']['calls']} ({hour['amazon_poke_calls']:,}), {n} slot(s); "
                f"deferrable {m['amazon_deferrable']['calls']} ({hour['amazon_deferrable_calls']:,} with "
                f"max_attempts raised), 0 slots, {n} trigger(s)",
                ratio=f"{times(hour['amazon_deferrable_calls'] / hour['ours_calls'], 'fewer')} calls than "
                f"deferrable, {times(hour['amazon_poke_calls'] / hour['ours_calls'], 'fewer')} than poke",
                target=f"<= {math.ceil(n / 100)} listing call(s) per poll, 0 slots",
                met=met,
                note="" if met else f"our poll made {m['ours']['by_operation']}",
            )
        )
    return {
        "measured": "HTTP requests reaching the local engine (all services), per poll",
        "schedules": {
            "ours": "first poll 10 s after deferring, then poll_delay(elapsed, 60, 600): a tenth of the "
            "time waited, between 60 s and 600 s, +-20% jitter (none here)",
            "amazon": defaults,
            "polls_in_first_hour": {
                "ours": ours_polls,
                "amazon_poke": poke_polls,
                "amazon_deferrable": trigger_polls,
            },
        },
        "sizes": measured,
        "rows": rows,
    }


def _measure(engine: Any, counter: RequestCounter, sizes: tuple[int, ...]) -> dict[str, Any]:
    from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
    from airflow_sm_provider.job_kinds import JobKind
    from airflow_sm_provider.naming import JobIdentity

    engine.client("s3").create_bucket(Bucket="bench")
    configs = job_configs("bench", code_archive(engine.client("s3"), "bench"))
    hook = SageMakerJobsHook(aws_conn_id=None)
    results: dict[str, Any] = {}
    started: list[tuple[JobKind, str]] = []
    try:
        for size in sizes:
            for kind in (JobKind.TRAINING, JobKind.PROCESSING):
                run_id = f"bench-{size}-{time.time_ns()}"
                identities = [JobIdentity("bench", "dag", run_id, "t", i) for i in range(size)]
                names = [hook.start_job(kind, configs[kind.value], who).name for who in identities]
                started += [(kind, name) for name in names]
                results[f"{kind.value}_{size}"] = _three_ways(names, kind.value, counter)
    finally:
        for kind, name in started:
            hook.stop_job(kind, name)
    return results


def _three_ways(names: list[str], kind: str, counter: RequestCounter) -> dict[str, Any]:
    counter.take()
    seconds = {}
    _, seconds["ours"], _ = cpu_timed(lambda: asyncio.run(_ours_first_poll(names, kind)))
    ours = counter.take()
    sensors = _amazon_sensors(names, kind)
    for sensor in sensors:
        sensor.poke({})
    first_poke = counter.take()
    for sensor in sensors:
        # A poke interval (60 s) passes between pokes: the training sensor describes its job
        # at most every 30 s, so the steady-state poke does; simulated rather than waited.
        if getattr(sensor, "last_describe_job_call", None) is not None:
            sensor.last_describe_job_call -= sensor.poke_interval
    _, seconds["amazon_poke"], _ = cpu_timed(lambda: [sensor.poke({}) for sensor in sensors])
    poke = counter.take()
    # Each Amazon trigger builds its own aiobotocore client (about a second each on a loaded
    # machine): a sample of them is run, and as each makes one Describe per attempt, scaled.
    sample = names[:TRIGGER_SAMPLE]
    _, seconds["amazon_deferrable"], _ = cpu_timed(
        lambda: asyncio.run(_amazon_triggers_first_attempt(sample, kind, counter))
    )
    deferrable = {op: count * len(names) // len(sample) for op, count in counter.take().items()}
    listing = sum(v for k, v in ours.items() if k in ("Search", "ListProcessingJobs"))
    return {
        "kind": kind,
        "jobs": len(names),
        "wall_s_of_one_poll": {k: round(v, 2) for k, v in seconds.items()},
        "ours": {"calls": sum(ours.values()), "listing_calls": listing, "by_operation": ours, "slots": 0},
        "amazon_poke": {
            "calls": sum(poke.values()),
            "by_operation": poke,
            "first_poke_calls": sum(first_poke.values()),
            "first_poke_by_operation": first_poke,
            "slots": len(names),
        },
        "amazon_deferrable": {
            "calls": sum(deferrable.values()),
            "by_operation": deferrable,
            "slots": 0,
            "triggers": len(names),
            "triggers_run": len(sample),
        },
    }
