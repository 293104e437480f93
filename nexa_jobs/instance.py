"""The persistent Dagster instance that `make up` and `make demo` share (DAGSTER_HOME, default .dagster_home).

Its storage (runs, event log, schedules and sensor state with their cursors) is SQLite files under
DAGSTER_HOME, the embedded default, or PostgreSQL when NEXA_DAGSTER_PG_URL is set (dagster-postgres).
The URL holds a password, so dagster.yaml names the variable (Dagster's `env:` form), never its value.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

PROJECT_HOME = ".dagster_home"  # relative to the project root (the working directory of make and nexa)
PG_URL_ENV = "NEXA_DAGSTER_PG_URL"
DAGSTER_YAML = """\
# Written by Nexa (make up / make demo). The instance keeps run history, schedules and sensor state here.
telemetry:
  enabled: false
# Sensor-launched refreshes (feedback rounds, new input files) each run a whole round, training included:
# one at a time, the others wait in the queue.
run_queue:
  tag_concurrency_limits:
    - key: nexa/trigger
      limit: 1
# The daemon fails runs stuck in STARTING (a run worker that never came up). It cannot see a STARTED run's
# worker die under the default run launcher; `nexa materialize` and the feedback sensor fail those
# (nexa_resources/run_worker.py).
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 60
"""
POSTGRES_STORAGE = f"""\
# Runs, event log, schedules and sensor cursors in PostgreSQL: the URL is read from {PG_URL_ENV} whenever
# the instance loads (webserver, daemon, run workers), so it is never written here.
storage:
  postgres:
    postgres_url:
      env: {PG_URL_ENV}
"""
POSTGRES_YAML = DAGSTER_YAML + POSTGRES_STORAGE


def pg_url() -> str | None:
    """NEXA_DAGSTER_PG_URL, or None when unset or empty (the SQLite default)."""
    return os.environ.get(PG_URL_ENV) or None


def check_pg_url(url: str) -> None:
    """Raise ValueError (naming the scheme only, never the URL: it holds a password) unless SQLAlchemy can
    open `url` with a driver that is installed. dagster-postgres brings psycopg2; SQLAlchemy 2.1 takes a bare
    `postgresql://` for psycopg 3, so the URL names its driver: `postgresql+psycopg2://user:password@host/db`."""
    import importlib.util

    scheme = url.split("://", 1)[0] if "://" in url else ""
    drivers = {"postgresql+psycopg2": "psycopg2", "postgresql+psycopg": "psycopg", "postgresql": "psycopg"}
    module = drivers.get(scheme)
    if module is None or importlib.util.find_spec(module) is None:
        raise ValueError(
            f"{PG_URL_ENV} must be a SQLAlchemy PostgreSQL URL with an installed driver, "
            f"postgresql+psycopg2://user:password@host:5432/database (got the scheme {scheme or 'none'!r})"
        )


def storage_label() -> str:
    """Where the instance keeps its runs, for printing: never the URL itself (it holds a password)."""
    return f"PostgreSQL ({PG_URL_ENV})" if pg_url() else "SQLite (DAGSTER_HOME)"


def dagster_home(root: Path | None = None) -> Path:
    """$DAGSTER_HOME, else <root>/.dagster_home, created with Nexa's dagster.yaml when it has none.

    The yaml's storage follows NEXA_DAGSTER_PG_URL: SQLite without it, PostgreSQL with it. A SQLite
    dagster.yaml Nexa wrote is switched to PostgreSQL once the variable is set; one naming the variable is
    never switched back silently (its runs live in PostgreSQL): without the variable this raises ValueError
    saying what to do. A dagster.yaml someone else wrote is left as it is.
    """
    if pg_url():
        check_pg_url(pg_url() or "")
    home = Path(os.environ.get("DAGSTER_HOME") or (root or Path.cwd()) / PROJECT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = POSTGRES_YAML if pg_url() else DAGSTER_YAML
    current = config.read_text() if config.exists() else None
    if current is None or (current == DAGSTER_YAML and wanted == POSTGRES_YAML):
        config.write_text(wanted)
    elif current == POSTGRES_YAML and wanted == DAGSTER_YAML:
        raise ValueError(
            f"the Dagster instance in {home} keeps its runs in PostgreSQL, but {PG_URL_ENV} is not set: set it "
            f"(the same URL as before), or delete {config} to start a new SQLite instance there"
        )
    elif current not in (DAGSTER_YAML, POSTGRES_YAML) and pg_url() and PG_URL_ENV not in current:
        print(
            f"warning: {PG_URL_ENV} is set, but {config} was not written by Nexa and does not use it: the "
            "instance keeps its runs where that file says",
            file=sys.stderr,
        )
    return home


def wants_persistent_instance() -> bool:
    """Whether runs need an instance on disk even without DAGSTER_HOME: PostgreSQL storage, or an executor
    whose step processes report to the run's instance (NEXA_EXECUTOR=multiprocess)."""
    from nexa_jobs.execution import executor_name

    return bool(pg_url()) or executor_name() != "in_process"


def open_instance() -> Any:
    """The Dagster instance `nexa materialize` and `make demo` run on; runs a dead worker left STARTED are failed."""
    import dagster as dg

    from nexa_resources.run_worker import fail_dead_runs

    # The project's instance when `make up` or `make demo` made one here (or runs need one on disk:
    # NEXA_DAGSTER_PG_URL, NEXA_EXECUTOR=multiprocess), so CLI runs show in the UI and the sensors see
    # them; else DAGSTER_HOME; else a throwaway instance.
    if not os.environ.get("DAGSTER_HOME") and (os.path.isdir(PROJECT_HOME) or wants_persistent_instance()):
        os.environ["DAGSTER_HOME"] = os.path.abspath(PROJECT_HOME)
    if not os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.ephemeral()
    dagster_home()  # writes Nexa's dagster.yaml into a new DAGSTER_HOME
    instance = dg.DagsterInstance.get()
    for run_id in fail_dead_runs(instance, by="nexa materialize"):
        print(f"run {run_id} was left STARTED by a worker that is gone (killed): marked failed", file=sys.stderr)
    return instance
