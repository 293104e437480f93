"""Dagster on PostgreSQL (NEXA_DAGSTER_PG_URL): a real server on 127.0.0.1 holds the runs, the event log, the
sensors' state with their cursors and ticks; round 0 is materialized on it, then a real dagster-daemon's
feedback sensor reads that round from it, launches the feedback round and stores its cursor there, and the
round runs against it. Nothing goes to SQLite, and the URL's password is written nowhere.

The server is a throwaway cluster of Debian's `postgresql` (tests/postgres_server.py; `make test` installs
the package through scripts/system-deps.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg2
import pytest
from dagster._core.scheduler.instigation import InstigatorState, TickStatus
from dagster._serdes import deserialize_value
from test_arrival_daemon import kill_tree

from nexa_assets.rounds import ROUND_TAG
from nexa_jobs.catalog import ASSET_CHECKS, ASSETS
from nexa_jobs.feedback_sensor import WEAKNESSES, run_key
from nexa_jobs.instance import PG_URL_ENV, POSTGRES_YAML, dagster_home
from nexa_resources.compute import ComputeResource
from nexa_resources.inputs import InputsResource
from nexa_resources.judge import JudgeResource
from nexa_resources.lake import LakeResource
from nexa_testing.scripted_server import DEFAULT_MODEL, ScriptedServer
from nexa_resources.teacher import TeacherResource
from postgres_server import PostgresServer, available, postgres_server
from smallest_loop import SMALLEST_LOOP_CONFIG

REPO = Path(__file__).resolve().parent.parent
DAEMON = str(Path(sys.executable).parent / "dagster-daemon")
CONFIG = SMALLEST_LOOP_CONFIG
ROUND_DEADLINE_S = 420  # daemon up, sensor tick, run worker start, one round of the loop on 2 busy cores
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg() -> PostgresServer:
    why = available()
    if why:
        pytest.fail(why)
    with postgres_server() as server:
        yield server


def sql(pg: PostgresServer, query: str, *args: object) -> list[tuple]:
    with psycopg2.connect(pg.dsn) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def wait_for(predicate, timeout: float, what: str, log: Path, daemon: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if daemon.poll() is not None:
            break
        time.sleep(1)
    tail = log.read_text(errors="replace")[-5000:] if log.exists() else ""
    raise AssertionError(f"{what} not seen within {timeout:.0f}s (daemon exit code {daemon.poll()}); log tail:\n{tail}")


def test_runs_events_and_sensor_cursors_live_in_postgres_and_the_daemon_runs_the_feedback_round(
    pg, tmp_path, scripted_server: ScriptedServer, monkeypatch
):
    home, inputs, lake_root = tmp_path / "dagster_home", tmp_path / "inputs", tmp_path / "lake"
    inputs.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(PG_URL_ENV, pg.url)
    dagster_home()  # what make up / make demo / nexa materialize do first
    config_text = (home / "dagster.yaml").read_text()
    assert config_text == POSTGRES_YAML and f"env: {PG_URL_ENV}" in config_text and pg.password not in config_text

    # 1. Round 0, materialized on the instance as `nexa materialize` opens it.
    from nexa_jobs.instance import open_instance as _instance

    lake = LakeResource(root=str(lake_root))
    resources = {
        "lake": lake,
        "inputs": InputsResource(uri=str(inputs)),
        "teacher": TeacherResource(base_url=scripted_server.base_url, model=DEFAULT_MODEL, api_key="sk-test"),
        "judge": JudgeResource(),
        "compute": ComputeResource(),
    }
    scripted_server.reset()
    begin = time.monotonic()
    with _instance() as instance:
        storages = {type(s).__name__ for s in (instance.run_storage, instance.event_log_storage, instance.schedule_storage)}
        assert storages == {"PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"}
        round0 = dg.materialize(
            [*ASSETS, *ASSET_CHECKS], resources=resources, run_config=CONFIG, instance=instance, tags={ROUND_TAG: "0"}
        )
        assert round0.success
    print(f"round 0 materialized: {time.monotonic() - begin:.1f}s")
    [(runs,)] = sql(pg, "SELECT count(*) FROM runs")
    assert runs == 1
    [(materializations,)] = sql(pg, "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
    assert materializations == len(lake.tables())

    # 2. A real daemon on the same instance: the feedback sensor finds round 0's weak cells in PostgreSQL,
    # launches round 1 (refresh_job, default run launcher), which runs and records there too.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXA_", "DAGSTER_", "AWS_", "OPENAI_"))}
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_DISABLE_TELEMETRY="1",
        OMP_NUM_THREADS="1",
        NEXA_DAGSTER_PG_URL=pg.url,
        NEXA_LAKE_ROOT=str(lake_root),
        NEXA_INPUT_URI=str(inputs),
        NEXA_TEACHER_BASE_URL=scripted_server.base_url,
        NEXA_TEACHER_MODEL=DEFAULT_MODEL,
    )
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [DAEMON, "run", "-w", str(REPO / "workspace.yaml")], cwd=REPO, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    started = time.monotonic()
    try:
        with dg.DagsterInstance.get() as instance:

            def round1_done() -> dg.DagsterRun | None:
                runs = instance.get_runs(dg.RunsFilter(tags={"dagster/run_key": run_key(1)}))
                if runs and runs[0].status == dg.DagsterRunStatus.FAILURE:
                    failures = [e.message for e in instance.all_logs(runs[0].run_id) if e.dagster_event
                                and e.dagster_event.event_type in (dg.DagsterEventType.STEP_FAILURE,
                                                                   dg.DagsterEventType.RUN_FAILURE)]
                    raise AssertionError(f"round 1 failed: {failures}")
                return runs[0] if runs and runs[0].status == dg.DagsterRunStatus.SUCCESS else None

            round1 = wait_for(round1_done, ROUND_DEADLINE_S, "round 1 launched by the daemon and succeeded", log, daemon)
            print(f"daemon start → round 1 done: {time.monotonic() - started:.1f}s")
            newest = instance.fetch_materializations(WEAKNESSES, limit=1).records[0]
            assert newest.run_id == round1.run_id

            def feedback_state():
                states = [s for s in instance.all_instigator_state() if s.name == "feedback_sensor"]
                cursor = states[0].instigator_data.cursor if states and states[0].instigator_data else None
                return states[0] if cursor == str(newest.storage_id) else None

            # The tick after round 1 reads its judgement (the loop stopped) and moves the cursor past it.
            state = wait_for(feedback_state, 60, "the feedback sensor's cursor at round 1's judgement", log, daemon)
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
            launched = [t for t in ticks if t.run_ids]
            assert [t.run_ids for t in launched] == [[round1.run_id]] and launched[0].status == TickStatus.SUCCESS
            assert launched[0].run_keys == [run_key(1)]
            assert any("loop stopped" in (t.skip_reason or "") for t in ticks if t.timestamp > launched[0].timestamp)

            assert round1.job_name == "refresh_job" and round1.tags[ROUND_TAG] == "1"
            assert round1.tags["dagster/sensor_name"] == "feedback_sensor"
            assert round1.run_config["ops"]["feedback_loop"]["config"] == {**CONFIG["ops"]["feedback_loop"]["config"], "round": 1}
            assert len(instance.get_runs()) == 2  # round 0 and round 1: nothing more once the loop stopped
            [arrival] = [s for s in instance.all_instigator_state() if s.name == "arrival_sensor"]
            assert json.loads(arrival.instigator_data.cursor)["seen"] == {}  # looked at the empty input folder
    finally:
        kill_tree(daemon)

    # The same, read straight from PostgreSQL's tables.
    assert sorted(sql(pg, "SELECT status FROM runs")) == [("SUCCESS",), ("SUCCESS",)]
    assert sql(pg, "SELECT count(*) FROM event_logs WHERE asset_key = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
               WEAKNESSES.to_string()) == [(2,)]
    states = [deserialize_value(body, InstigatorState) for (body,) in sql(pg, "SELECT instigator_body FROM instigators")]
    cursors = {state.name: state.instigator_data.cursor for state in states}
    assert cursors["feedback_sensor"] == str(newest.storage_id) and json.loads(cursors["arrival_sensor"])["seen"] == {}
    [(ticks_stored,)] = sql(pg, "SELECT count(*) FROM job_ticks")
    assert ticks_stored >= 3  # feedback: launched round 1, then skipped; arrival: at least one look
    [(heartbeats,)] = sql(pg, "SELECT count(*) FROM daemon_heartbeats")
    assert heartbeats >= 1

    # Round 1 wrote the lake: bought prompts, a second checkpoint, its judgement.
    assert lake.read("train/checkpoints")["round"].sort().to_list() == [0, 1]
    assert lake.read("raw/prompts").filter(pl.col("round") == 1).height == 4  # bought for round 1
    assert set(lake.read("feedback/weaknesses")["round"]) == {0, 1}

    # No SQLite storage under DAGSTER_HOME, and the password is nowhere: not in a file there (dagster.yaml,
    # compute logs), not in the daemon's log, not in any run, event or tick stored in PostgreSQL.
    assert not [p for p in home.rglob("*.db")], "SQLite files under DAGSTER_HOME"
    leaked = [p for p in [log, *home.rglob("*")] if p.is_file() and pg.password in p.read_text(errors="replace")]
    assert not leaked, f"the PostgreSQL password is written in {leaked}"
    for table, column in (("runs", "run_body"), ("event_logs", "event"), ("job_ticks", "tick_body"),
                          ("instigators", "instigator_body")):
        assert sql(pg, f"SELECT count(*) FROM {table} WHERE {column} LIKE %s", f"%{pg.password}%") == [(0,)], table
