"""SageMaker API calls per status poll for 1, 10 and 250 jobs, measured on the local engine.

    python -m benchmarks --only poll_calls     (--quick: 1 and 3 jobs)

For each size, starts that many training jobs and that many processing jobs (names as the
operators make them: one readable prefix plus a hash) on a local engine that runs one job at a
time, so the rest stay queued (InProgress / Pending). It then counts the HTTP calls botocore
sends for one ``SageMakerJobsHook.job_states`` poll (the same planner the trigger runs with
aiobotocore): while the jobs run, and the final poll once all have been stopped (when each
terminal state is confirmed with one Describe). "naive" is the Amazon provider's way: one
Describe per job per poll.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections import Counter

from benchmarks.harness import Settings, benchmark

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
SIZES = (1, 10, 250)
QUICK_SIZES = (1, 3)


def _code(s3, bucket: str) -> str:
    buf = io.BytesIO()
    data = b"import time\ntime.sleep(600)\n"
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket=bucket, Key="code.tar.gz", Body=buf.getvalue())
    return f"s3://{bucket}/code.tar.gz"


def _configs(bucket: str, code: str) -> dict:
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
            "AppSpecification": {
                "ImageUri": "local/python:3",
                "ContainerEntrypoint": ["python3", "-c", "pass"],
            },
            "ProcessingResources": {"ClusterConfig": resources},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
    }


def _poll(hook, refs) -> tuple[dict[str, int], Counter]:
    calls: list[str] = []

    def record(model, **_) -> None:
        calls.append(model.name)

    hook.conn.meta.events.register("before-call.sagemaker", record)
    try:
        states = hook.job_states(refs)
    finally:
        hook.conn.meta.events.unregister("before-call.sagemaker", record)
    return dict(Counter(calls)), Counter(s.outcome.value for s in states.values())


@benchmark("poll_calls", "SageMaker API calls per status poll for 1, 10 and 250 jobs")
def poll_calls(settings: Settings) -> dict:
    from airflow_sm_provider.local import LocalEngine

    results: dict = {"measured": "HTTP calls sent by botocore to the local engine, per job_states poll"}
    saved = dict(os.environ)
    try:
        with LocalEngine(max_concurrent_jobs=1) as engine:
            os.environ.update(engine.environ())
            _measure(engine, QUICK_SIZES if settings.quick else SIZES, results)
    finally:  # the engine is gone: later benchmarks must not reach for it
        os.environ.clear()
        os.environ.update(saved)
    return results


def _measure(engine, sizes: tuple[int, ...], results: dict) -> None:
    """Start ``size`` jobs of each kind per size; count the calls of a running and a final poll."""
    from airflow_sm_provider.hooks.jobs import SageMakerJobsHook
    from airflow_sm_provider.job_kinds import JobKind
    from airflow_sm_provider.naming import JobIdentity

    engine.client("s3").create_bucket(Bucket="bench")
    configs = _configs("bench", _code(engine.client("s3"), "bench"))
    hook = SageMakerJobsHook(aws_conn_id=None)
    for size in sizes:
        for kind in (JobKind.TRAINING, JobKind.PROCESSING):
            run_id = f"bench-{size}-{time.time_ns()}"
            names = [
                hook.start_job(kind, configs[kind.value], JobIdentity("bench", "dag", run_id, "t", i)).name
                for i in range(size)
            ]
            refs = [(kind, name) for name in names]
            running_calls, running_states = _poll(hook, refs)
            for name in names:
                hook.stop_job(kind, name)
            deadline = time.monotonic() + 120
            while True:
                final_calls, final_states = _poll(hook, refs)
                ended = final_states["stopped"] + final_states["succeeded"]
                if ended == size or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            results[f"{kind.value}_{size}"] = {
                "jobs": size,
                "running_poll_calls": sum(running_calls.values()),
                "running_poll_by_operation": running_calls,
                "running_states": dict(running_states),
                "final_poll_calls": sum(final_calls.values()),
                "final_poll_by_operation": final_calls,
                "final_states": dict(final_states),
                "naive_calls_per_poll": size,
            }
