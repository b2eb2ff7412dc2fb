"""The log tailer against moto's CloudWatch Logs (the same emulation the local engine embeds)."""

from __future__ import annotations

import contextlib
import time

import pytest

from airflow_sm_provider.hooks.logs import JobLogTailer

GROUP = "/aws/sagemaker/TrainingJobs"
NOW = int(time.time() * 1000)  # CloudWatch rejects events older than 14 days


@pytest.fixture
def logs(engine):
    """CloudWatch Logs of the session's local engine (moto's in-process mock_aws would reset
    the engine's own moto state mid-session)."""
    client = engine.client("logs")
    with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
        client.create_log_group(logGroupName=GROUP)
    return client


def put(client, stream: str, events: list[tuple[int, str]]) -> None:
    with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
        client.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    client.put_log_events(
        logGroupName=GROUP,
        logStreamName=stream,
        logEvents=[{"timestamp": NOW + ts, "message": msg} for ts, msg in events],
    )


def test_every_line_once_across_streams_and_polls(logs):
    tailer = JobLogTailer(logs, GROUP, "job")
    assert tailer.poll() == []  # no stream yet
    put(logs, "job/algo-1-1000", [(1000, "a1"), (1002, "a2")])
    put(logs, "job/algo-2-1000", [(1001, "b1"), (1001, "b2"), (1001, "b3")])  # shared millisecond
    put(logs, "job-2/algo-1-1000", [(1000, "other job")])  # shares the name prefix, not the job

    first = tailer.poll()
    assert [line.message for line in first] == ["a1", "b1", "b2", "b3", "a2"]
    assert tailer.short_name(first[0].stream) == "algo-1-1000"
    assert tailer.poll() == []

    put(logs, "job/algo-1-1000", [(1003, "a3")])
    # A stream that appears later (a spot restart) is read too: the naive tailer lists
    # streams only until it has InstanceCount of them and would never see it.
    put(logs, "job/algo-1-2000", [(2000, "r1"), (2001, "r2")])
    put(logs, "job/algo-2-1000", [(1001, "b4")])  # again the same millisecond as b1..b3
    assert [line.message for line in tailer.poll()] == ["b4", "a3", "r1", "r2"]
    assert tailer.poll() == []


def test_pages_beyond_one_response(logs):
    tailer = JobLogTailer(logs, GROUP, "big")
    for start in (0, 10_000):
        put(logs, "big/algo-1-1", [(start + i, f"line {start + i}") for i in range(10_000)])
    lines = tailer.poll()
    assert len(lines) == 20_000
    assert len({line.message for line in lines}) == 20_000
    assert tailer.poll() == []


def test_many_streams_listed_over_pages(logs):
    tailer = JobLogTailer(logs, GROUP, "wide")
    for host in range(60):  # describe_log_streams returns 50 per page
        put(logs, f"wide/algo-{host}-1", [(host, f"host {host}")])
    assert len(tailer.poll()) == 60


def test_missing_log_group_is_no_lines(logs):
    assert JobLogTailer(logs, "/aws/sagemaker/NoSuchGroupInThisTest", "job").poll() == []


def test_tail_reads_the_end_of_each_stream(logs):
    """After a deferred wait the task log gets the end of the log, where a failure shows."""
    put(logs, "end/algo-1-1", [(i, f"a{i}") for i in range(500)])
    put(logs, "end/algo-2-1", [(1000, "b0"), (1001, "Traceback: boom")])
    lines = JobLogTailer(logs, GROUP, "end").tail(limit=3)
    assert [line.message for line in lines] == ["a497", "a498", "a499", "b0", "Traceback: boom"]
    assert JobLogTailer(logs, "/aws/sagemaker/ProcessingJobs", "end").tail() == []


def test_errors_other_than_a_missing_group_are_raised():
    """Only the operator decides to carry on without logs; the tailer hides no error. (moto
    cannot deny a call, so a stand-in client raises what CloudWatch says without logs:* rights.)"""
    from botocore.exceptions import ClientError

    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DescribeLogStreams")

    class DeniedClient:
        def describe_log_streams(self, **_):
            raise denied

    with pytest.raises(ClientError):
        JobLogTailer(DeniedClient(), GROUP, "job").poll()
