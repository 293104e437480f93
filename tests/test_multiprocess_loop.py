"""The loop with Dagster's multiprocess executor (NEXA_EXECUTOR=multiprocess) writes the same lake as with the
in-process executor, and the lake takes four concurrent writers.

Both loops are `make demo`'s driver (`nexa_jobs.demo.run_loop`: round 0, then the round the real feedback
sensor asks for) in a process of its own with its own lake and Dagster instance, the teacher on the scripted
server and the `tiny` student. Tables are compared row by row, every column, except when a row was written
(`created_at`), how long things took, and the ids that name a run: run ids and checkpoint ids (a hash of
the run id) are replaced by the round they belong to before comparing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.instance.ref import InstanceRef
from smallest_loop import SMALLEST_LOOP_CONFIG
from test_arrival_daemon import kill_tree

from nexa_resources.lake import LakeResource
from nexa_testing.scripted_server import DEFAULT_MODEL, ScriptedServer

REPO = Path(__file__).resolve().parent.parent
CONFIG = SMALLEST_LOOP_CONFIG
# Measurements of the run, not results: wall time, latency, throughput.
TIMING_COLUMNS = {"created_at", "latency_ms", "wall_s", "tokens_per_s", "elapsed_s", "duration_s"}
DRIVER = textwrap.dedent(
    """
    import json, sys
    from nexa_jobs.instance import open_instance as _instance
    from nexa_jobs.demo import run_loop
    rounds = run_loop(_instance(), log=lambda m: print(m, flush=True), run_config=json.loads(sys.argv[1]))
    print("ROUNDS " + json.dumps(rounds), flush=True)
    """
)
LOOP_TIMEOUT_S = 780
pytestmark = pytest.mark.slow


def start_loop(base: Path, executor: str, server: ScriptedServer) -> tuple[subprocess.Popen, Path]:
    """The demo's loop on CONFIG in a child process with NEXA_EXECUTOR=`executor`, its lake and instance under
    `base`; (process, log)."""
    home, inputs, lake = base / "dagster_home", base / "inputs", base / "lake"
    home.mkdir(parents=True)
    inputs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXA_", "DAGSTER_", "AWS_", "OPENAI_"))}
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_DISABLE_TELEMETRY="1",
        OMP_NUM_THREADS="1",
        NEXA_LAKE_ROOT=str(lake),
        NEXA_INPUT_URI=str(inputs),
        NEXA_TEACHER_BASE_URL=server.base_url,
        NEXA_TEACHER_MODEL=DEFAULT_MODEL,
        NEXA_EXECUTOR=executor,
        NEXA_EXECUTOR_MAX_CONCURRENT="3",
    )
    log = base / "loop.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, json.dumps(CONFIG)], cwd=REPO, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    return proc, log


def finish_loop(base: Path, executor: str, proc: subprocess.Popen, log: Path) -> tuple[LakeResource, list[dict], Path]:
    """Wait for a loop started by start_loop; (lake, rounds, DAGSTER_HOME)."""
    try:
        proc.wait(timeout=LOOP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"{executor} loop exited with {proc.returncode}:\n{text[-6000:]}"
    [line] = [line for line in text.splitlines() if line.startswith("ROUNDS ")]
    rounds = json.loads(line.removeprefix("ROUNDS "))
    assert [r["round"] for r in rounds] == [0, 1] and all(r["success"] for r in rounds), (rounds, text[-6000:])
    print(f"{executor}: " + ", ".join(f"round {r['round']} {r['wall_s']:.1f}s" for r in rounds))
    return LakeResource(root=str(base / "lake")), rounds, base / "dagster_home"


def ids_by_round(lake: LakeResource, rounds: list[dict]) -> dict[str, str]:
    """The lake's folder → `<lake>` (checkpoint URIs), each run id and checkpoint id → the round it belongs to."""
    names = {lake.root: "<lake>"}
    names |= {r["run_id"]: f"<run of round {r['round']}>" for r in rounds}
    checkpoints = lake.read("train/checkpoints", columns=["checkpoint_id", "round"])
    names |= {c: f"<checkpoint of round {r}>" for c, r in checkpoints.iter_rows()}
    return names


def comparable(df: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """The table without timing columns, every run/checkpoint id (also inside strings) named by its round,
    rows in a canonical order."""
    df = df.drop([c for c in df.columns if c in TIMING_COLUMNS])

    def rename(expr: pl.Expr) -> pl.Expr:
        for old, new in names.items():
            expr = expr.str.replace_all(old, new, literal=True)
        return expr

    out = []
    for name, dtype in df.schema.items():
        if dtype == pl.String:
            out.append(rename(pl.col(name)))
        elif dtype == pl.List(pl.String):
            out.append(pl.col(name).list.eval(rename(pl.element())))
        else:
            out.append(pl.col(name))
    df = df.select(out)
    return df.sort([c for c, t in df.schema.items() if t.is_numeric() or t in (pl.String, pl.Boolean)])


def step_spans(home: Path, run_id: str) -> dict[str, tuple[float, float, int]]:
    """step key → (start, end, pid of the process the step ran in), from the run's event log."""
    spans: dict[str, list] = {}
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None or not entry.step_key:
                continue
            span = spans.setdefault(entry.step_key, [None, None, None])
            if event.event_type == dg.DagsterEventType.STEP_START:
                span[0], span[2] = entry.timestamp, event.pid
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                span[1] = entry.timestamp
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    return {k: (s, e, p) for k, (s, e, p) in spans.items() if s is not None and e is not None}


@pytest.mark.timeout(900)
def test_multiprocess_loop_writes_the_same_tables_as_the_in_process_loop(tmp_path, scripted_server):
    # Both loops at once: each spends most of its time starting processes and waiting on them.
    scripted_server.reset()
    loops = {executor: start_loop(tmp_path / executor, executor, scripted_server) for executor in ("in_process", "multiprocess")}
    reference, ref_rounds, ref_home = finish_loop(tmp_path / "in_process", "in_process", *loops["in_process"])
    parallel, par_rounds, par_home = finish_loop(tmp_path / "multiprocess", "multiprocess", *loops["multiprocess"])

    tables = sorted(spec.path for spec in reference.tables())
    assert tables == sorted(spec.path for spec in parallel.tables())
    assert {"train/checkpoints", "eval/metrics", "feedback/weaknesses", "feedback/requests"} <= set(tables)
    ref_names, par_names = ids_by_round(reference, ref_rounds), ids_by_round(parallel, par_rounds)
    for table in tables:
        expect = comparable(reference.read(table), ref_names)
        got = comparable(parallel.read(table), par_names)
        assert got.columns == expect.columns, table
        assert got.height == expect.height, f"{table}: {got.height} rows, in-process {expect.height}"
        diff = [c for c in expect.columns if not got[c].equals(expect[c], check_names=True)]
        assert not diff, f"{table}: columns differ from the in-process loop: {diff}"
    # The loop ran, bought round 1's prompts and trained twice, in both.
    assert parallel.read("train/checkpoints")["round"].sort().to_list() == [0, 1]
    assert parallel.read("raw/prompts").filter(pl.col("round") == 1).height == 4  # bought for round 1

    # Every step of the multiprocess runs ran in a process of its own, and independent steps overlapped.
    for rounds, home, multiprocess in ((par_rounds, par_home, True), (ref_rounds, ref_home, False)):
        for r in rounds:
            spans = step_spans(home, r["run_id"])
            print(f"{'multiprocess' if multiprocess else 'in_process'} round {r['round']}: "
                  + ", ".join(f"{k} {e - s:.1f}s" for k, (s, e, _) in sorted(spans.items(), key=lambda kv: kv[1])))
            pids = {pid for _, _, pid in spans.values()}
            assert len(spans) >= 10
            if not multiprocess:
                assert len(pids) == 1, f"in-process run {r['round']} used {len(pids)} processes"
                continue
            assert len(pids) == len(spans), f"round {r['round']}: {len(spans)} steps in {len(pids)} processes"
            ordered = sorted(spans.values())
            overlaps = sum(1 for a, b in zip(ordered, ordered[1:]) if b[0] < a[1])
            assert overlaps, f"round {r['round']}: no two steps ran at the same time"


def test_the_orchestrating_process_is_the_run_worker_so_a_finished_step_does_not_fail_the_run(tmp_path, monkeypatch):
    """A run launched without worker tags (as the daemon launches them): the executor records its own process
    before any step starts; a step process, which holds the run as it was at launch, leaves that alone; so
    the feedback sensor's dead-worker check, run from the second step after the first step's process ended,
    does not fail the live run."""
    from dagster._core.definitions.reconstruct import ReconstructableJob

    from nexa_resources.run_worker import PID_TAG

    job = ReconstructableJob.for_file(str(Path(__file__).parent / "multiprocess_job.py"), "two_step_job")

    monkeypatch.setenv("NEXA_LAKE_ROOT", str(tmp_path / "lake"))
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = dg.execute_job(job, instance=instance)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        run = instance.get_run_by_id(result.run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags[PID_TAG] == str(os.getpid())
        step_pids = {m.metadata["pid"].value for m in (e.materialization for e in result.get_asset_materialization_events())}
        assert len(step_pids) == 2 and os.getpid() not in step_pids


# ------------------------------------------------------------------------------------- four writers

_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import polars as pl
    from nexa_resources.lake import LakeResource, Lineage

    root, worker, workers, sync = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    lake = LakeResource(root=root)
    (sync / str(worker)).touch()
    deadline = time.monotonic() + 120
    while len(list(sync.iterdir())) < workers and time.monotonic() < deadline:  # start together
        time.sleep(0.001)
    # All four create the same new table at once, then merge 10 merges of 8 keys each, every key shared with
    # the merges of the writers beside it (writer w covers w*4 .. w*4+43), updating the others' rows.
    lake.write("scratch/created", pl.DataFrame({"k": list(range(8)), "w": [worker] * 8}), mode="merge", keys=["k"])
    for i in range(10):
        ids = [worker * 4 + i * 4 + j for j in range(8)]
        rows = pl.DataFrame({"prompt_id": [f"k{n:04d}" for n in ids], "text": [f"w{worker}-{i}"] * 8})
        lake.write("raw/prompts", rows, mode="merge", lineage=Lineage(f"writer-{worker}", i))
    print("done", worker)
    """
)


def test_four_processes_writing_one_table_at_once_lose_nothing(lake, tmp_path):
    """Optimistic concurrency with four writers (the multiprocess executor's steps, or four daemons' runs):
    every commit lands, no key is lost or duplicated."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    sync = tmp_path / "sync"
    sync.mkdir()
    workers = 4
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), lake.root, str(w), str(workers), str(sync)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for w in range(workers)
    ]
    outputs = [proc.communicate(timeout=240) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
        assert out.startswith("done")

    created = lake.read("scratch/created")
    assert sorted(created["k"].to_list()) == list(range(8))  # one create, then merges: never a duplicate
    assert lake.version("scratch/created") == workers - 1
    expected = {f"k{w * 4 + i * 4 + j:04d}" for w in range(workers) for i in range(10) for j in range(8)}
    prompts = lake.read("raw/prompts")
    assert prompts["prompt_id"].n_unique() == prompts.height == len(expected)
    assert set(prompts["prompt_id"]) == expected
    assert lake.version("raw/prompts") == workers * 10 - 1  # every merge a commit of its own
    history = [h for h in lake.history("raw/prompts") if h.get("nexa.run_id")]
    assert sorted({h["nexa.run_id"] for h in history}) == [f"writer-{w}" for w in range(workers)]
