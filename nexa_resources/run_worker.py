"""Which process runs a Dagster run (host and pid tags), and failing runs whose process died silently.

Dagster's run monitoring finds a dead run worker only through launchers that can check a worker's
health (Docker, Kubernetes, ECS). In-process runs (`nexa materialize`, the demo) and the
DefaultRunLauncher's runs (sensors under `make up`) have no such check: a kill -9 left the run STARTED
forever, holding its `nexa/trigger` queue slot. So every run records its worker here, and the CLI and
the feedback sensor fail the STARTED/STARTING runs of this host whose worker is gone.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg

HOST_TAG = "nexa/worker_host"
PID_TAG = "nexa/worker_pid"
START_TAG = "nexa/worker_start"  # the process's start time (Linux clock ticks), so a reused pid is not alive
_WATCHED = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def worker_tags(pid: int | None = None) -> dict[str, str]:
    """The tags naming this process (or `pid` on this host) as a run's worker."""
    pid = os.getpid() if pid is None else pid
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(pid)}
    start = _start_time(pid)
    if start is not None:
        tags[START_TAG] = start
    return tags


def tag_run_worker(instance: dg.DagsterInstance | None, run: dg.DagsterRun | None) -> None:
    """Record this process as `run`'s worker, unless whoever launched it already did.

    The stored run is asked too: a step process of the multiprocess executor holds the run as it was when
    the step was launched, before the orchestrating process recorded itself (nexa_jobs/execution.py).
    """
    if instance is None or run is None or PID_TAG in run.tags:
        return
    stored = instance.get_run_by_id(run.run_id)
    if stored is not None and PID_TAG in stored.tags:
        return
    instance.add_run_tags(run.run_id, worker_tags())


def fail_dead_runs(instance: dg.DagsterInstance, by: str) -> list[str]:
    """Mark failed every STARTING/STARTED run of this host whose worker process is gone; returns their ids."""
    host = socket.gethostname()
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_WATCHED, tags={HOST_TAG: host})):
        pid = int(run.tags.get(PID_TAG, "0") or 0)
        if pid <= 0 or _alive(pid, run.tags.get(START_TAG)):
            continue
        instance.report_run_failed(
            run,
            f"run worker (pid {pid} on {host}) is gone: the process ended without reporting, e.g. killed "
            f"(kill -9, out of memory) while the run was {run.status.value}. Marked failed by {by}. "
            "Re-run the selection to resume: merged rows are kept and teacher answers already received "
            "are recovered from the journal, not sent again.",
        )
        failed.append(run.run_id)
    return failed


def _alive(pid: int, start: str | None) -> bool:
    stat = _proc_stat(pid)
    if stat is not None:
        state, started = stat
        return state not in ("Z", "X") and (start is None or start == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True


def _start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) from /proc/<pid>/stat, or None where there is no such file."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ", comm may hold spaces
    return fields[0], fields[19]
