"""Process supervision of a local job: start, stream, stop by escalation, end leftovers.

A job's command runs below :mod:`jobinit`, its first process, started in a new session so it
leads its own process group (in its own PID namespace where the OS allows, see
:mod:`container`). When the command ends, jobinit ends every process the job left; a stop is
SIGTERM to the group, which jobinit passes to every process of the job and turns into SIGKILL
after the grace period; the engine sends SIGKILL to the group itself if that has not ended it a
moment later. The group is recorded with its leader's start time so that an engine started
after one that died can end the group it left running, and only that.

Output: two reader threads take the job's stdout and stderr in large chunks and hand over
whole lines, many at a time, so a job printing fast costs the engine little per line. The
supervising loop sends them to a :class:`LogSink` and a :class:`MetricCollector` in batches
and reads until both pipes are closed, which happens once every process of the job is gone:
every line the job printed is sent, in order, however fast it printed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_sm_provider.local.cloudwatch import LogSink, MetricCollector
from airflow_sm_provider.local.control import Control, EndReason, RunSettings


@dataclass
class ProcessEnd:
    returncode: int | None
    reason: EndReason | None  # why the engine ended it, None if it exited by itself
    stderr_tail: list[str]


#: A line longer than this is handed over in pieces (CloudWatch cuts events at 256 KiB anyway).
_MAX_LINE_BYTES = 256 * 1024
#: Seconds to keep reading after the job's first process ended while something still holds its
#: pipes open (only a process that escaped supervision can); what was read is still sent.
_DRAIN_SECONDS = 2.0
#: Lines to gather before a batch goes to CloudWatch Logs, whatever ``log_flush_seconds`` says.
_BATCH_LINES = 10_000
#: Seconds the engine waits past the grace period before it kills the job's group itself.
_KILL_MARGIN_SECONDS = 1.0
_Chunk = tuple[float, list[str], bool]  # (read time, lines, from stderr)


def _pump(pipe: Any, is_err: bool, chunks: queue.Queue[_Chunk | None]) -> None:
    """Read a pipe in large chunks; put the whole lines of each, then None at its end."""
    fd, partial = pipe.fileno(), b""
    while data := os.read(fd, 1 << 16):
        parts = (partial + data).split(b"\n")
        partial = parts.pop()
        while len(partial) > _MAX_LINE_BYTES:
            parts.append(partial[:_MAX_LINE_BYTES])
            partial = partial[_MAX_LINE_BYTES:]
        if parts:
            chunks.put((time.time(), [_text(p) for p in parts], is_err))
    if partial:
        chunks.put((time.time(), [_text(partial)], is_err))
    pipe.close()
    chunks.put(None)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


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
    """End job process groups left running (by an engine that died): SIGTERM, grace, SIGKILL.

    SIGTERM reaches each job's :mod:`jobinit`, which ends the job's other processes (those
    that left the group too) after the grace period; SIGKILL follows a moment later.
    """
    alive = [g for g in groups if _live_members(g)]
    for group in alive:
        _signal_group(group.pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds + _KILL_MARGIN_SECONDS
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

    ``command`` starts with the job's first process (:mod:`jobinit`, possibly inside
    ``unshare``), which ends the job's other processes. ``on_start`` learns the job's process
    group first, so it can be ended if the engine dies.
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
    chunks: queue.Queue[_Chunk | None] = queue.Queue()
    for pipe, is_err in ((proc.stdout, False), (proc.stderr, True)):
        threading.Thread(target=_pump, args=(pipe, is_err, chunks), daemon=True).start()
    try:
        end = _supervise(proc, chunks, control, settings, _Output(sink, metrics), tick)
    except BaseException:
        _signal_group(pgid, signal.SIGKILL)  # an engine error (an upload, say) ends the job too
        proc.wait()
        raise
    return end


def _supervise(
    proc: subprocess.Popen[bytes],
    chunks: queue.Queue[_Chunk | None],
    control: Control,
    settings: RunSettings,
    out: _Output,
    tick: Callable[[], None] | None,
) -> ProcessEnd:
    """Read the job's output to its end, passing on stops and time limits as signals."""
    pgid = proc.pid
    open_pipes, reason, kill_at = 2, None, None
    last_flush = last_tick = time.monotonic()
    exited_at: float | None = None
    while open_pipes:
        try:
            item = chunks.get(timeout=0.05)
            while True:  # what is already read, in one go, up to a batch
                if item is None:
                    open_pipes -= 1
                else:
                    out.add(*item)
                if out.pending >= _BATCH_LINES:
                    break
                item = chunks.get_nowait()
        except queue.Empty:
            pass
        now = time.monotonic()
        if reason is None and (why := control.check()) is not None:
            # jobinit passes SIGTERM on and kills what is left after the grace period.
            reason, kill_at = why, now + settings.stop_grace_seconds + _KILL_MARGIN_SECONDS
            _signal_group(pgid, signal.SIGTERM)
        if kill_at is not None and now >= kill_at:
            _signal_group(pgid, signal.SIGKILL)
        if exited_at is None and proc.poll() is not None:
            exited_at = now
            _signal_group(pgid, signal.SIGKILL)  # anything left in the group goes with the job
        if exited_at is not None and now - exited_at > _DRAIN_SECONDS and chunks.empty():
            out.add(
                time.time(),
                ["[local engine] a process outside the job's control holds its output open"],
                False,
            )
            break
        if out.pending and (now - last_flush >= settings.log_flush_seconds or out.pending >= _BATCH_LINES):
            out.flush(final=False)
            last_flush = now
        if tick and now - last_tick >= settings.checkpoint_sync_seconds:
            tick()
            last_tick = now
    proc.wait()
    out.flush(final=True)
    return ProcessEnd(proc.returncode, reason, list(out.tail))


class _Output:
    """A job's output on its way to CloudWatch: batched lines, the metrics, stderr's tail."""

    def __init__(self, sink: LogSink, metrics: MetricCollector | None) -> None:
        self._sink = sink
        self._metrics = metrics
        self._batch: list[tuple[float, str]] = []
        self.tail: deque[str] = deque(maxlen=20)

    @property
    def pending(self) -> int:
        return len(self._batch)

    def add(self, ts: float, lines: list[str], is_err: bool) -> None:
        self._batch.extend(zip(itertools.repeat(ts), lines))
        if is_err:
            self.tail.extend(line for line in lines if line.strip())

    def flush(self, *, final: bool) -> None:
        """Match and send the lines gathered; ``final`` also publishes the minute under way."""
        batch, self._batch = self._batch, []
        if self._metrics is not None:
            notices = self._metrics.feed(batch)
            batch += [(time.time(), notice) for notice in notices]
        self._sink.write(batch)
        if self._metrics is not None:
            self._metrics.flush(final=final)
