"""Reliability cases that need Airflow's real services: a real triggerer restarted mid-wait,
the template DAG under injected faults, and hundreds of deferred waits in one triggerer.

Each starts the api-server, scheduler, dag-processor and triggerer as processes
(``airflow_services``) on SQLite and the LocalExecutor, with the local engine in this process;
runs are triggered through the REST API. Slow (minutes each) and marked ``services``:
``python -m pytest -m services tests/reliability/test_rel_services.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from airflow_services import AirflowApi, AirflowServices, engine_env, template_env
from jobs_support import InjectedFaults, training_config, upload_script

from airflow_sm_provider.local import LocalEngine
from airflow_sm_provider.local.faults import ENV_VAR

pytestmark = pytest.mark.services

TEMPLATE_DAGS = Path(__file__).resolve().parents[2] / "dags"
T = TypeVar("T")

#: A DAG of one deferrable training task, ``train``, mapped over a list of job configs.
DAG_SOURCE = '''\
"""Written by tests/reliability/test_rel_services.py."""
from datetime import datetime

from airflow.sdk import DAG

from airflow_sm_provider.operators.jobs import TrainingJobOperator

with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    TrainingJobOperator.partial(
        task_id="train", deferrable=True, poll_interval={poll}, max_poll_interval={max_poll}
    ).expand(config={configs!r})
'''


def write_dag(folder: Path, dag_id: str, configs: list[dict[str, Any]], poll: float = 2) -> None:
    """A DAG file in ``folder`` whose one task ``train`` maps a deferred training job over ``configs``."""
    folder.mkdir(parents=True, exist_ok=True)
    source = DAG_SOURCE.format(dag_id=dag_id, configs=configs, poll=poll, max_poll=poll * 3)
    (folder / f"{dag_id}.py").write_text(source)


def wait_until(check: Callable[[], T], timeout: float, what: str, every: float = 1) -> T:
    """``check()``'s first true value, polled every ``every`` seconds; raises after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout} s")
        time.sleep(every)
    return value


def new_bucket(engine: LocalEngine) -> str:
    bucket = f"rel-services-{uuid.uuid4().hex[:12]}"
    engine.client("s3").create_bucket(Bucket=bucket)
    return bucket


def training_jobs(engine: LocalEngine) -> list[dict[str, Any]]:
    """Every training job the engine knows, described (status, transitions, tags)."""
    sagemaker = engine.client("sagemaker")
    names = [
        summary["TrainingJobName"]
        for page in sagemaker.get_paginator("list_training_jobs").paginate()
        for summary in page["TrainingJobSummaries"]
    ]
    jobs = [sagemaker.describe_training_job(TrainingJobName=name) for name in names]
    for job in jobs:
        tags = sagemaker.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
        job["Tags"] = {tag["Key"]: tag["Value"] for tag in tags}
    return jobs


def start_run(
    airflow: AirflowServices, dag_id: str, conf: dict[str, Any] | None = None
) -> tuple[AirflowApi, str]:
    """Unpause ``dag_id`` once parsed and trigger a run through the REST API; (client, run id)."""
    api = airflow.api()
    api.wait_for_dag(dag_id, timeout=300)
    api.unpause(dag_id)
    return api, api.trigger(dag_id, conf)["dag_run_id"]


def trigger_logs(airflow: AirflowServices, dag_id: str, run_id: str) -> dict[str, str]:
    """The task's trigger logs, one file per triggerer that ran its trigger (``...trigger.<id>.log``)."""
    return {
        name: text for name, text in airflow.task_logs(dag_id, run_id, "train").items() if ".trigger." in name
    }


# ------------------------------------------------------------------ triggerer restart

RESTART_DAG = "rel_triggerer_restart"
POLLED = "Waiting on 1 SageMaker job(s)"  # the trigger's progress line after a poll that saw it run
FIRED = "Trigger fired event"  # the triggerer's line in the trigger log
STARTED, SIGTERM_EXIT = "Starting the triggerer", "Exiting gracefully upon receiving signal 15"
TRIGGERER_ID = re.compile(r"\.trigger\.(\d+)\.log$")


@pytest.mark.timeout(1200)
def test_triggerer_restarted_mid_wait_hands_the_wait_on_without_stopping_the_job(tmp_path: Path) -> None:
    """SIGTERM to the real triggerer while a training task is deferred, then start it again.

    The job runs until the test creates its gate file, so the restart lands mid-wait however
    slow the machine is. The old triggerer cancels the trigger (``cleanup()``), which must not
    stop the job: only ``on_kill`` (the task killed by a user) does. The new triggerer picks
    the trigger up from its serialized kwargs, polls, and fires once the gate opens. Were
    cancellation to stop the job, the job would end Stopped and the task, with it, fail.
    """
    gate = tmp_path / "gate"
    script = f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.2)\n"
    with LocalEngine() as engine:
        bucket = new_bucket(engine)
        code = upload_script(engine.client("s3"), bucket, script)
        # Longer than the wait for the gate can take on a loaded machine (the default is 120 s).
        config = training_config(bucket, code, "restart", StoppingCondition={"MaxRuntimeInSeconds": 3600})
        write_dag(tmp_path / "dags", RESTART_DAG, [config])
        with AirflowServices(tmp_path / "dags", env=engine_env(engine), home=tmp_path / "airflow") as airflow:
            api, run_id = start_run(airflow, RESTART_DAG)
            wait_until(
                lambda: [ti["state"] for ti in api.task_instances(RESTART_DAG, run_id)] == ["deferred"],
                300,
                "deferred",
            )
            # The first triggerer has polled the running job.
            before = wait_until(
                lambda: {n: t for n, t in trigger_logs(airflow, RESTART_DAG, run_id).items() if POLLED in t},
                300,
                "polled by the first triggerer",
            )
            old_pid = airflow.processes["triggerer"].pid
            new_pid = airflow.restart("triggerer").pid
            assert [job["TrainingJobStatus"] for job in training_jobs(engine)] == ["InProgress"]
            # The second triggerer writes its own trigger log (its job id in the name) once it polled.
            after = wait_until(
                lambda: {
                    n: t
                    for n, t in trigger_logs(airflow, RESTART_DAG, run_id).items()
                    if n not in before and POLLED in t
                },
                300,
                "polled by the second triggerer",
            )
            gate.touch()
            run = api.wait_for_run(RESTART_DAG, run_id, timeout=300)
            states = {ti["task_id"]: ti["state"] for ti in api.task_instances(RESTART_DAG, run_id)}
            logs = trigger_logs(airflow, RESTART_DAG, run_id)
            triggerer_log = airflow.log("triggerer")
        jobs = training_jobs(engine)
    assert run["state"] == "success", (states, logs)
    # A graceful restart: the old process was told to exit (SIGTERM) and a new one started.
    assert old_pid != new_pid
    lifecycle = re.findall(f"{STARTED}|{SIGTERM_EXIT}", triggerer_log)
    assert lifecycle[:3] == [STARTED, SIGTERM_EXIT, STARTED], triggerer_log[-3000:]
    # Two triggerers (their job ids in the file names) ran the trigger; the second fired it.
    assert len(before) == 1 and len(after) == 1, sorted(logs)
    (first,), (second,) = before, after
    assert TRIGGERER_ID.search(first)[1] != TRIGGERER_ID.search(second)[1]
    assert FIRED not in logs[first], logs[first]
    assert FIRED in logs[second] and "'status': 'success'" in logs[second], logs[second]
    assert len(jobs) == 1, [job["TrainingJobName"] for job in jobs]
    (job,) = jobs
    transitions = [step["Status"] for step in job["SecondaryStatusTransitions"]]
    assert job["TrainingJobStatus"] == "Completed", job["TrainingJobStatus"]
    assert not {"Stopping", "Stopped"} & set(transitions), transitions
    print(f"triggerer {old_pid} -> {new_pid}; job {job['TrainingJobName']}: {transitions}")


# ------------------------------------------------------------------ faults under the services

TEMPLATE_DAG = "sagemaker_training_pipeline"
LEARNING_RATES = [0.1, 0.5]


@pytest.mark.timeout(2400)  # retries back off: far longer than the fault-free run under load
def test_template_dag_under_faults_through_the_real_services_runs_each_job_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The template DAG triggered through the REST API while the engine fails 30% of the
    SageMaker calls and drops every Create's answer (``SAGEMAKER_LOCAL_FAULTS``).

    The faults reach the workers' operators, the triggerer's triggers and the plot and report
    tasks' SDK clients alike; every client runs with 10 attempts (the provider's
    ``DEFAULT_RETRIES``; ``AWS_MAX_ATTEMPTS`` for the SDK's and this test's own clients).
    """
    monkeypatch.setenv(ENV_VAR, json.dumps({"rate": 0.3, "after_create": 1.0, "seed": 31}))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "10")
    with InjectedFaults() as faults, LocalEngine() as engine:
        bucket = new_bucket(engine)
        conf = {
            "bucket": bucket,
            "prefix": "faults",
            "experiment": "services-faults",
            "grid": {"learning-rate": LEARNING_RATES, "hidden-units": [16]},
            "epochs": 4,
        }
        with AirflowServices(TEMPLATE_DAGS, env=template_env(engine), home=tmp_path / "airflow") as airflow:
            api, run_id = start_run(airflow, TEMPLATE_DAG, conf)
            run = api.wait_for_run(TEMPLATE_DAG, run_id, timeout=2000)
            states = {ti["task_id"]: ti["state"] for ti in api.task_instances(TEMPLATE_DAG, run_id)}
        sagemaker = engine.client("sagemaker")
        processing = sagemaker.list_processing_jobs(MaxResults=100)["ProcessingJobSummaries"]
        training = training_jobs(engine)
    assert run["state"] == "success", states
    assert [job["ProcessingJobStatus"] for job in processing] == ["Completed"], processing
    rates = sorted(float(job["HyperParameters"]["learning-rate"]) for job in training)
    assert rates == LEARNING_RATES, [job["TrainingJobName"] for job in training]
    assert {job["TrainingJobStatus"] for job in training} == {"Completed"}
    # The faults were injected: at least each Create's lost answer, and a share of the rest.
    assert faults.count >= 1 + len(LEARNING_RATES) + 5, faults.count
    print(f"template run under faults: {faults.count} faults injected; {len(training) + 1} jobs, Completed")


# ------------------------------------------------------------------ many waits in one triggerer

SCALE_DAG = "rel_many_deferred_jobs"
#: How many mapped jobs; ``REL_SERVICES_JOBS`` runs fewer (or more) on another machine.
JOBS = int(os.environ.get("REL_SERVICES_JOBS", "250"))
ENGINE_CONCURRENCY = 8
PARALLELISM = 8
#: Seconds after the last task deferred before the hold: each trigger has built its client and
#: polled (the first poll comes ``MIN_FIRST_POLL`` s after deferring, the next within 30 s).
WARM_SECONDS = 60
#: Seconds every trigger keeps polling its job before the gate opens: the window memory must
#: stay flat in.
HOLD_SECONDS = 120
#: Airflow's defer race (see ``triggers.jobs``) failed 2 of 250 tasks with the default 10 s when
#: the machine's load reached 20: the scheduler took 14 s to see a worker's deferral.
MIN_FIRST_POLL = 30
#: Largest RSS growth of the triggerer (with its children) over the hold, the median of its
#: last third against the median of its first. In the hold each of the triggers polls at least
#: every 30 s: 1,000 or more polls. A poll that leaked a client would add 0.7 MB (an aiobotocore
#: SageMaker client on a shared session, measured; 17 MB on a session of its own).
MAX_GROWTH_MB = 32


class RssSampler:
    """The resident memory of a process and its children, sampled every ``every`` seconds in a
    thread while entered: ``samples`` holds (seconds since entered, MB)."""

    def __init__(self, pid: int, every: float = 2.0) -> None:
        self.process = psutil.Process(pid)
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self._started = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def now(self) -> float:
        """Seconds since entered, on the samples' clock."""
        return time.monotonic() - self._started

    def rss_mb(self) -> float:
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):  # a child may end between the two calls
                total += process.memory_info().rss
        return total / 2**20

    def between(self, start: float, end: float) -> list[float]:
        """The MB sampled from ``start`` to ``end`` seconds."""
        return [mb for at, mb in self.samples if start <= at <= end]

    def _run(self) -> None:
        while not self._done.wait(self.every):
            self.samples.append((self.now(), self.rss_mb()))

    def __enter__(self) -> RssSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


@pytest.mark.timeout(3600)
def test_many_mapped_deferred_jobs_under_an_engine_limit_run_once_each_with_flat_triggerer_memory(
    tmp_path: Path,
) -> None:
    """``JOBS`` mapped training tasks, each deferred on its own job, on an engine that runs
    ``ENGINE_CONCURRENCY`` jobs at once, with all their triggers live in the one triggerer.

    The jobs run until the test opens a gate (a file): the first ``ENGINE_CONCURRENCY`` wait on
    it, the rest wait Pending for a slot. Once every task has deferred, the triggers poll for
    ``WARM_SECONDS`` and then ``HOLD_SECONDS``, while the triggerer's RSS (with its children) is
    sampled; then the gate opens and the jobs drain. Flat: the RSS does not grow over the hold.
    """
    gate = tmp_path / "gate"
    script = (
        f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.5)\n"
        "for epoch in range(3):\n    print(f'epoch={epoch} train_loss={1 / (epoch + 1):.3f}')\n"
    )
    with LocalEngine(max_concurrent_jobs=ENGINE_CONCURRENCY) as engine:
        bucket = new_bucket(engine)
        code = upload_script(engine.client("s3"), bucket, script)
        configs = [
            training_config(bucket, code, f"scale-{index}", StoppingCondition={"MaxRuntimeInSeconds": 7200})
            for index in range(JOBS)
        ]
        write_dag(tmp_path / "dags", SCALE_DAG, configs, poll=10)
        env = {
            **engine_env(engine),
            # Deferred tasks free their slot; these bound the tasks starting or resuming at once.
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(JOBS),
            "AIRFLOW__SAGEMAKER_PROVIDER__MIN_FIRST_POLL_SECONDS": str(MIN_FIRST_POLL),
            # At load 20 the scheduler's own heartbeat lagged past the default 30 s: it marked
            # itself failed and reset 40 of its queued tasks as orphans (twice), which Airflow
            # then ran again (the provider coped: each retry attached to its job, or started a
            # new one after its killed try had stopped it; but one job per task is the point here).
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "600",
        }
        with AirflowServices(tmp_path / "dags", env=env, home=tmp_path / "airflow") as airflow:
            started = time.monotonic()
            api, run_id = start_run(airflow, SCALE_DAG)
            with RssSampler(airflow.processes["triggerer"].pid) as rss:
                wait_until(
                    lambda: (
                        Counter(ti["state"] for ti in api.task_instances(SCALE_DAG, run_id))
                        == {"deferred": JOBS}
                    ),
                    3000,
                    "all deferred",
                    every=5,
                )
                all_deferred = rss.now()
                pending = [job["SecondaryStatus"] for job in training_jobs(engine)].count("Pending")
                time.sleep(WARM_SECONDS + HOLD_SECONDS)
                gate.touch()
                opened = rss.now()
                run = api.wait_for_run(SCALE_DAG, run_id, timeout=3000)
            wall = time.monotonic() - started
            states = Counter(ti["state"] for ti in api.task_instances(SCALE_DAG, run_id))
        jobs = training_jobs(engine)
    hold = rss.between(all_deferred + WARM_SECONDS, opened)
    first, last = median(hold[: len(hold) // 3]), median(hold[-(len(hold) // 3) :])
    mb = [value for _, value in rss.samples]
    print(
        f"{JOBS} jobs ({pending} Pending with all deferred), {ENGINE_CONCURRENCY} at once, in {wall:.0f} s "
        f"(all deferred after {all_deferred:.0f} s); triggerer RSS start {mb[0]:.0f} MB, peak {max(mb):.0f} "
        f"MB, end {mb[-1]:.0f} MB; over the {HOLD_SECONDS} s hold {first:.0f} -> {last:.0f} MB; every 60 s: "
        f"{[(round(at), round(value)) for at, value in rss.samples[::30]]}"
    )
    assert run["state"] == "success", states
    assert states == {"success": JOBS}, states
    assert pending >= JOBS - ENGINE_CONCURRENCY  # the engine's limit held the rest back
    assert len(jobs) == JOBS, len(jobs)
    assert {job["TrainingJobStatus"] for job in jobs} == {"Completed"}
    # One job per map index: its identity tag, and the config's name as the name's prefix.
    by_index = {int(job["Tags"]["airflow-sm:map-index"]): job["TrainingJobName"] for job in jobs}
    assert sorted(by_index) == list(range(JOBS))
    assert all(name.startswith(f"scale-{index}-") for index, name in by_index.items())
    assert last - first < MAX_GROWTH_MB, (first, last)
