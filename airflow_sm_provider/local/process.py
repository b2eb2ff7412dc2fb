"""Process supervision of a local job: start, stream, stop by escalation, end leftovers.

A job's process starts in a new session, so it leads its own process group; its output is
streamed line by line to a :class:`LogSink` (and a :class:`MetricCollector`). A job is stopped
by escalation: SIGTERM to its process group, SIGKILL after the grace period, so no process
outlives its job. The group is recorded with its leader's start time so that an engine started
after one that died can end the group it left running, and only that.
"""

from __future__ import annotations

import contextlib
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
