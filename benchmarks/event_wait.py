"""Job end -> trigger event, with and without state-change events, and the API calls per hour of
100 waiting jobs either way; measured on the local engine.

    python -m benchmarks --only event_wait [--runs 10]     (--quick: one run, short intervals)

Latency: a training job waits for a file; once the trigger's first poll has seen it running,
the file is written and the job ends. The latency is from the job's ``TrainingEndTime`` to the
trigger firing. "events": ``JobStatusTrigger`` with an SQS queue fed by the engine's EventBridge
(``airflow-sm events setup``); "polling": the same trigger without a queue, at the operators'
default intervals (30 s, growing to 300 s; --quick scales them down to 2 s), so its latency is
the rest of its current poll interval.

Calls: the SageMaker calls the trigger made (counted at its invoke) and the SQS calls of the
shared listener, per run; and the calls of one batched poll of 100 running jobs (3 with
--quick). The calls per hour for 100 jobs that wait for hours are computed from those counts
and the two schedules: polling every ``max_poll_interval`` (300 s); events: a safety poll every
``safety_poll_interval`` (600 s) per trigger plus one 20 s long poll at a time per triggerer
process, and per job end one Describe and one DeleteMessageBatch.
"""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.harness import Settings, benchmark, in_seconds, row, summarize, times

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
GATED = (
    b"import os, pathlib, time\n"
    b"gate = pathlib.Path(os.environ['GATE'])\n"
    b"while not gate.exists():\n"
    b"    time.sleep(0.05)\n"
)
POLL_INTERVAL, MAX_POLL_INTERVAL = 30.0, 300.0  # the operators' defaults
QUICK_INTERVAL = 2.0
SAFETY_POLL = 600.0
LONG_POLL = 20.0


def _code(s3) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(GATED)
        tar.addfile(info, io.BytesIO(GATED))
    s3.put_object(Bucket="events-bench", Key="code.tar.gz", Body=buf.getvalue())
    return "s3://events-bench/code.tar.gz"


def _config(code: str, gate: Path) -> dict[str, Any]:
    return {
        "TrainingJobName": "bench-events",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "local/python:3", "TrainingInputMode": "File"},
        "HyperParameters": {"sagemaker_program": "train.py", "sagemaker_submit_directory": code},
        "Environment": {"GATE": str(gate)},
        "OutputDataConfig": {"S3OutputPath": "s3://events-bench/models"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


class _Counting:
    """Counts the SageMaker calls every trigger poll makes, and marks each poll's end."""

    def __init__(self) -> None:
        from airflow_sm_provider.triggers import jobs as trigger_module

        self.module = trigger_module
        self.real = trigger_module.run_poll_async
        self.calls: Counter[str] = Counter()
        self.polls = 0

    async def __call__(self, refs: Any, invoke: Any, *, skip: Any = ()) -> Any:
        async def counted(call: Any) -> Any:
            self.calls[call.method] += 1
            return await invoke(call)

        poll = await self.real(refs, counted, skip=skip)
        self.polls += 1
        return poll

    def __enter__(self) -> _Counting:
        self.module.run_poll_async = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.module.run_poll_async = self.real


async def _waits(engine: Any, code: str, queue_url: str, interval: float, runs: int) -> list[dict[str, Any]]:
    """``runs`` waits of one job each, one after the other on one event loop (as in a triggerer,
    where the shared listener outlives a trigger): the latency from the job's end to the event,
    and the calls each wait made."""
    from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
    from airflow_sm_provider.job_kinds import JobKind
    from airflow_sm_provider.naming import JobIdentity
    from airflow_sm_provider.triggers import events as events_module
    from airflow_sm_provider.triggers.jobs import JobStatusTrigger

    hook = SageMakerJobsHook(aws_conn_id=None)
    results = []
    for _ in range(runs):
        gate = Path(tempfile.gettempdir()) / f"event-bench-{uuid.uuid4().hex}"
        identity = JobIdentity("bench", "events", uuid.uuid4().hex, "t")
        started = await asyncio.to_thread(hook.start_job, JobKind.TRAINING, _config(code, gate), identity)
        trigger = JobStatusTrigger(
            jobs=[{"kind": "training", "name": started.name}],
            aws_conn_id=None,
            poll_interval=interval,
            max_poll_interval=interval * MAX_POLL_INTERVAL / POLL_INTERVAL,
            min_first_poll=0,
            event_queue_url=queue_url,
            safety_poll_interval=SAFETY_POLL,
        )

        async def fire(trigger: JobStatusTrigger = trigger) -> float:
            async for _ in trigger.run():
                return time.time()
            raise RuntimeError("the trigger ended without an event")

        with _Counting() as counting:
            waiting = asyncio.create_task(fire())
            while counting.polls < 1:
                await asyncio.sleep(0.05)
            listener = events_module.listener_for(queue_url, trigger.aws) if queue_url else None
            sqs_before = Counter(listener.calls) if listener else Counter()
            gate.write_text("end")
            fired = await waiting
        gate.unlink(missing_ok=True)
        job = await asyncio.to_thread(hook.describe_job, JobKind.TRAINING, started.name)
        results.append(
            {
                "latency_s": fired - job["TrainingEndTime"].timestamp(),
                "sagemaker_calls": dict(counting.calls),
                "sqs_calls": dict(Counter(listener.calls) - sqs_before) if listener else {},
            }
        )
    return results


def _calls_per_poll(engine: Any, code: str, size: int) -> int:
    """The SageMaker calls of one batched poll of ``size`` running (queued) training jobs."""
    from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
    from airflow_sm_provider.job_kinds import JobKind
    from airflow_sm_provider.naming import JobIdentity

    hook = SageMakerJobsHook(aws_conn_id=None)
    run_id = uuid.uuid4().hex
    gate = Path(tempfile.gettempdir()) / f"event-bench-{run_id}"  # never written: the jobs wait
    refs = [
        (
            JobKind.TRAINING,
            hook.start_job(
                JobKind.TRAINING, _config(code, gate), JobIdentity("bench", "poll", run_id, "t", i)
            ).name,
        )
        for i in range(size)
    ]
    calls: list[str] = []
    hook.conn.meta.events.register("before-call.sagemaker", lambda model, **_: calls.append(model.name))
    hook.job_states(refs)
    return len(calls)


def _per_hour(per_poll_1: int, per_poll_100: int) -> dict[str, Any]:
    """API calls per hour of 100 jobs waiting for hours (steady state), from counted calls
    (with --quick, ``per_poll_100`` is a poll of 3 jobs)."""
    polls = 3600 / MAX_POLL_INTERVAL
    safety = 3600 / SAFETY_POLL
    receives = 3600 / LONG_POLL
    return {
        "one_trigger_on_100_jobs": {
            "polling": {"sagemaker": round(polls * per_poll_100), "sqs": 0},
            "events": {"sagemaker": round(safety * per_poll_100), "sqs": round(receives)},
        },
        "100_triggers_of_one_job": {
            "polling": {"sagemaker": round(polls * 100 * per_poll_1), "sqs": 0},
            "events": {"sagemaker": round(safety * 100 * per_poll_1), "sqs": round(receives)},
        },
        "per_job_end": {"polling": {"sagemaker": 1}, "events": {"sagemaker": 1, "sqs": 1}},
        "schedule": {
            "polling_poll_every_s": MAX_POLL_INTERVAL,
            "events_safety_poll_every_s": SAFETY_POLL,
            "events_long_poll_s": LONG_POLL,
            "sqs_receives_are_per_triggerer_process": True,
        },
    }


def event_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's rows, from the measured results: wake-up time and calls per hour, events vs polling."""
    wake = results["job_end_to_trigger_event"]
    events, polling = wake["events"], wake["polling"]
    hourly = results["calls_per_hour_100_jobs"]["100_triggers_of_one_job"]
    return [
        row(
            "Job end -> trigger event, events vs polling",
            in_seconds(events),
            f"{in_seconds(polling)} (poll interval {polling['poll_interval_s']:g} s)",
            ratio=times(polling["median_ms"] / events["median_ms"], "sooner"),
            target="<= 5 s",
            met=events["within_target"],
        ),
        row(
            "API calls per hour, 100 waits of one job each",
            f"{hourly['events']['sagemaker']} SageMaker + {hourly['events']['sqs']} SQS per triggerer",
            f"{hourly['polling']['sagemaker']} SageMaker (polls every {MAX_POLL_INTERVAL:g} s)",
            ratio=times(hourly["polling"]["sagemaker"] / hourly["events"]["sagemaker"], "fewer SageMaker"),
            note="computed from the calls counted per wait and the two poll schedules",
        ),
    ]


@benchmark("event_wait", "Job end -> trigger event with and without events; API calls per hour for 100 waits")
def event_wait(settings: Settings) -> dict:
    from airflow_sm_provider import event_setup
    from airflow_sm_provider.aws_args import AwsArgs
    from airflow_sm_provider.local import LocalEngine

    interval = QUICK_INTERVAL if settings.quick else POLL_INTERVAL
    saved = dict(os.environ)
    try:
        with LocalEngine() as engine:
            os.environ.update(engine.environ())
            engine.client("s3").create_bucket(Bucket="events-bench")
            code = _code(engine.client("s3"))
            queue_url = event_setup.create(AwsArgs(aws_conn_id=None), "bench-job-ends", "bench-job-ends")[
                "queue_url"
            ]
            runs = {
                mode: asyncio.run(_waits(engine, code, url, interval, settings.runs))
                for mode, url in (("events", queue_url), ("polling", ""))
            }
            size = 3 if settings.quick else 100
            per_poll = {1: _calls_per_poll(engine, code, 1), size: _calls_per_poll(engine, code, size)}
    finally:  # the engine is gone: later benchmarks must not reach for it
        os.environ.clear()
        os.environ.update(saved)
    results = {
        "job_end_to_trigger_event": {
            "events": summarize([r["latency_s"] for r in runs["events"]], target_ms=5000),
            "polling": {
                **summarize([r["latency_s"] for r in runs["polling"]]),
                "poll_interval_s": interval,
            },
        },
        "calls_per_wait": {
            mode: [{k: v for k, v in r.items() if k != "latency_s"} for r in rs] for mode, rs in runs.items()
        },
        "calls_per_batched_poll": {f"{jobs}_jobs": calls for jobs, calls in per_poll.items()},
        "calls_per_hour_100_jobs": _per_hour(per_poll[1], per_poll[size]),
    }
    return {**results, "rows": event_rows(results)}
