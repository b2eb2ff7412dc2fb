"""The first process of every local job: it runs the job's command and takes every descendant down with it.

Usage: ``python -I jobinit.py <grace seconds> <command> [args...]`` (standard library only, so
it runs under any interpreter without the engine's modules on its path).

Theory of operation. The engine starts this program in place of the job's command. It starts
the command as its child, reaps whatever ends below it, and ends when the command ends: then
every process the job left (daemons, ``setsid`` grandchildren, anything holding the job's
pipes) is killed, so no process of a job outlives it. SIGTERM or SIGINT to it are passed on to
every descendant, and those still alive after the grace period are killed.

It finds the descendants one of two ways:

- As PID 1 of the job's own PID namespace (the engine's usual mode, see :mod:`container`),
  every other process in the namespace is a descendant: ``kill(-1, sig)`` reaches them all,
  and when this process ends the kernel kills whatever is left in the namespace, even if the
  engine had to SIGKILL it. A namespace's PID 1 only receives the signals it handles, which is
  why the job's command does not run as PID 1 itself.
- Without a PID namespace it makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), so
  an orphan below it (a ``setsid`` daemon whose parent exited) is re-parented to it instead of
  to the system's init, and it walks ``/proc`` for the processes descended from it. Here a
  SIGKILL to this process (which the engine sends only after the grace period and a margin)
  would orphan what it had not yet killed.

It exits with the command's exit status, or 128 + the signal that ended it (as shells do).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
_POLL_SECONDS = 0.02


def _descendants(root: int) -> list[int]:
    """Processes below ``root`` (from ``/proc``), children first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(sig: int, in_namespace: bool) -> None:
    """Send ``sig`` to every process of the job but this one."""
    if in_namespace:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, sig)
        return
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap() -> list[tuple[int, int]]:
    """(pid, wait status) of every child that has ended."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append((pid, status))


def _exit_code(status: int) -> int:
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main(argv: list[str]) -> int:
    grace, command = float(argv[0]), argv[1:]
    in_namespace = os.getpid() == 1
    if not in_namespace:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    kill_at: list[float] = []

    def on_stop(signum: int, _frame: object) -> None:
        if not kill_at:
            kill_at.append(time.monotonic() + grace)
        _signal_all(signum, in_namespace)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    try:
        child = os.fork()
    except OSError as err:
        print(f"cannot start {command[0]}: {err}", file=sys.stderr)
        return 126
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            os.execvp(command[0], command)  # noqa: S606 - the job's own command, as the job asked
        except OSError as err:
            print(f"cannot run {command[0]}: {err}", file=sys.stderr, flush=True)
        os._exit(127)
    code: int | None = None
    while code is None:
        for pid, status in _reap():
            if pid == child:
                code = _exit_code(status)
        if code is None:
            if kill_at and time.monotonic() >= kill_at[0]:
                _signal_all(signal.SIGKILL, in_namespace)
            time.sleep(_POLL_SECONDS)
    # The job's command has ended: whatever it left behind goes with it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        _signal_all(signal.SIGKILL, in_namespace)
        _reap()
        if in_namespace or not _descendants(os.getpid()):
            break  # in a namespace the kernel ends the rest when PID 1 exits
        time.sleep(_POLL_SECONDS)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
