"""Finding a local job's processes from outside its PID namespace.

Inside its namespace a job sees its own process ids, not the host's, so tests find the job's
processes by the ``TRAINING_JOB_NAME`` its environment carries.
"""

from __future__ import annotations

from pathlib import Path


def job_pids(job_name: str) -> list[int]:
    """Host ids of the live (not zombie) processes whose environment names ``job_name``."""
    marker = f"TRAINING_JOB_NAME={job_name}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if marker in environ.split(b"\0") and state != "Z":
            pids.append(int(entry.name))
    return pids
