"""Follows a SageMaker job's CloudWatch Logs without skipping or repeating an event.

A job writes one stream per instance (and per restart, e.g. after a spot interruption) named
``<job name>/<host>-<epoch>`` in ``/aws/sagemaker/TrainingJobs`` or ``/ProcessingJobs``.
The Amazon provider's tailer loses lines in three ways: it lists streams only until it has
``InstanceCount`` of them (a stream created later, after a restart, is never read), it lists
one page only, and it resumes each stream from a (timestamp, skip) position by re-reading from
that timestamp, so an event ingested late with an older timestamp is skipped and the skip count
goes wrong when several events share a millisecond. Here every poll lists all of the job's
streams (all pages) and each stream resumes from its own ``nextForwardToken``: CloudWatch hands
out each event after that token exactly once, whatever its timestamp.

:meth:`JobLogTailer.tail` is the other read: the last lines of each stream, for a job that has
already ended (after a deferred wait), where the failure is, rather than the head of the log.

Errors: a log group that does not exist yet is no lines; any other error (access denied,
throttling, a network failure) is raised, and the operator decides what to do (it logs one
warning and stops tailing: logs never change a task's outcome).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from airflow_sm_provider.job_kinds import KINDS, JobKind

if TYPE_CHECKING:
    from airflow_sm_provider.aws_args import AwsArgs

# Pages read from one stream per poll; the rest is read on the next poll (its token is kept).
MAX_PAGES_PER_STREAM = 50
# Lines of each stream ``tail`` returns by default, and the pages it reads at most per stream.
TAIL_LINES = 200
MAX_TAIL_PAGES = 5


@dataclass(frozen=True)
class LogLine:
    """One log event, with the stream it came from."""

    stream: str
    timestamp: int
    message: str


class JobLogTailer:
    """Reads the new events of all of one job's log streams on each ``poll()``.

    ``client`` is a boto3 CloudWatch Logs client (e.g. ``AwsLogsHook(...).conn``).
    """

    def __init__(self, client: Any, log_group: str, job_name: str) -> None:
        self.client = client
        self.log_group = log_group
        self.prefix = f"{job_name}/"
        self.tokens: dict[str, str | None] = {}

    def poll(self) -> list[LogLine]:
        """Events that arrived since the previous poll, merged across streams by timestamp."""
        for stream in self._stream_names():
            self.tokens.setdefault(stream, None)
        per_stream = [self._read(stream) for stream in sorted(self.tokens)]
        return list(heapq.merge(*per_stream, key=lambda line: line.timestamp))

    def _stream_names(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {"logGroupName": self.log_group, "logStreamNamePrefix": self.prefix}
        while True:
            try:
                page = self.client.describe_log_streams(**kwargs)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return names  # the group appears with the first line any job writes
                raise
            names.extend(stream["logStreamName"] for stream in page.get("logStreams", []))
            if not page.get("nextToken") or page["nextToken"] == kwargs.get("nextToken"):
                return names
            kwargs["nextToken"] = page["nextToken"]

    def _read(self, stream: str) -> list[LogLine]:
        lines: list[LogLine] = []
        for _ in range(MAX_PAGES_PER_STREAM):
            token = self.tokens[stream]
            kwargs: dict[str, Any] = {
                "logGroupName": self.log_group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token is not None:
                kwargs["nextToken"] = token
            page = self.client.get_log_events(**kwargs)
            events = page.get("events", [])
            lines.extend(LogLine(stream, event["timestamp"], event["message"]) for event in events)
            self.tokens[stream] = page.get("nextForwardToken", token)
            # CloudWatch returns the token it was given once the end of the stream is reached;
            # an empty page with a new token only means a gap in time, so read on.
            if self.tokens[stream] == token:
                break
        return lines

    def tail(self, limit: int = TAIL_LINES) -> list[LogLine]:
        """The last ``limit`` events of each of the job's streams, merged by timestamp.

        Reads backwards from the end of each stream (``startFromHead=False``); pages holding no
        event (a gap in time) are read through, up to ``MAX_TAIL_PAGES`` per stream.
        """
        per_stream = [self._read_end(stream, limit) for stream in sorted(self._stream_names())]
        return list(heapq.merge(*per_stream, key=lambda line: line.timestamp))

    def _read_end(self, stream: str, limit: int) -> list[LogLine]:
        lines: list[LogLine] = []
        kwargs: dict[str, Any] = {
            "logGroupName": self.log_group,
            "logStreamName": stream,
            "startFromHead": False,
            "limit": limit,
        }
        for _ in range(MAX_TAIL_PAGES):
            page = self.client.get_log_events(**kwargs)
            events = page.get("events", [])
            lines[:0] = [LogLine(stream, event["timestamp"], event["message"]) for event in events]
            token = page.get("nextBackwardToken")
            if len(lines) >= limit or not token or token == kwargs.get("nextToken"):
                break
            kwargs["nextToken"] = token
            kwargs["limit"] = limit - len(lines)
        return lines[-limit:]

    def short_name(self, stream: str) -> str:
        """The stream name without the job prefix (``algo-1-1700000000``)."""
        return stream.removeprefix(self.prefix)


def job_log_tailer(aws: AwsArgs, kind: JobKind, job_name: str) -> JobLogTailer:
    """A tailer of one job's logs, with a CloudWatch Logs client from the AWS arguments."""
    from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

    client = AwsLogsHook(**aws.hook_kwargs()).conn
    return JobLogTailer(client, KINDS[JobKind(kind)].log_group, job_name)
