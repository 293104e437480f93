"""The persistent Dagster instance that `make up` and `make demo` share (DAGSTER_HOME, default .dagster_home)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_HOME = ".dagster_home"  # relative to the project root (the working directory of make and nexa)
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


def dagster_home(root: Path | None = None) -> Path:
    """$DAGSTER_HOME, else <root>/.dagster_home, created with Nexa's dagster.yaml when it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or (root or Path.cwd()) / PROJECT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home
