"""What a kill -9 leaves behind: the answer journal's recovery (teacher and eval answers), and runs whose
worker process is gone.

The end-to-end kill is tests/test_distill_assets.py::test_killed_collection_resends_only_what_was_in_flight.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nexa_resources.tables.distill import COMPLETION_SCHEMA
from nexa_assets.evaluate.answering import answer_model as _answer, client_maker as _client_maker
from nexa_assets.evaluate.predict import predict
from nexa_resources.tables.eval import EVAL_PROMPT_SCHEMA
from nexa_core.taxonomy import TASK_TYPES
from nexa_resources.journal import JOURNAL_ENV, Journal, journal_dir, recover_into
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.llm_client import ChatClient, SamplingParams, run_sync
from nexa_resources.run_worker import HOST_TAG, PID_TAG, START_TAG, fail_dead_runs, worker_tags

TABLE = "distill/completions"


def _row(request_id: str, completion: str | None = "an answer", error: str | None = None) -> dict:
    row = {name: None for name in COMPLETION_SCHEMA}
    return row | {"request_id": request_id, "prompt_id": f"p-{request_id}", "completion": completion, "error": error}


def _recover(lake: LakeResource) -> int:
    return recover_into(lake, TABLE, COMPLETION_SCHEMA)


@pytest.fixture()
def lake(tmp_path) -> LakeResource:
    lake = LakeResource(root=str(tmp_path / "lake"))
    table = pl.DataFrame([_row("a", "first answer"), _row("b", None, "http_500: scripted")], schema=COMPLETION_SCHEMA)
    lake.write(TABLE, table, mode="merge", lineage=Lineage(run_id="run-before"))
    return lake


def test_recovery_merges_a_dead_runs_answers_once_and_keeps_answered_rows(lake):
    folder = journal_dir(lake, TABLE)
    assert folder == Path(lake.root_uri()) / "_journal" / "distill" / "completions"
    dead = Journal.open(folder, Lineage(run_id="run-killed", round=2))
    for row in (_row("a", "paid twice?"), _row("b", "retried answer"), _row("c", "new answer")):
        dead.append(row)
    dead.close()  # what a kill leaves: the file, unlocked
    with dead.path.open("ab") as fh:
        fh.write(b'{"request_id": "d", "compl')  # the line the kill cut short

    assert _recover(lake) == 3
    table = {r["request_id"]: r for r in lake.read(TABLE).to_dicts()}
    assert table["a"]["completion"] == "first answer" and table["a"]["run_id"] == "run-before"  # untouched
    assert table["b"]["completion"] == "retried answer" and table["b"]["error"] is None  # an error replaced
    assert table["c"]["run_id"] == "run-killed" and table["c"]["round"] == 2
    assert set(table) == {"a", "b", "c"}
    assert list(folder.iterdir()) == []

    version = lake.version(TABLE)
    assert _recover(lake) == 0 and lake.version(TABLE) == version


def test_recovery_leaves_a_live_writers_journal(lake):
    folder = journal_dir(lake, TABLE)
    with Journal.open(folder, Lineage(run_id="run-live")) as live:
        live.append(_row("e"))
        assert _recover(lake) == 0
        assert live.path.exists() and "e" not in set(lake.read(TABLE)["request_id"])
    assert _recover(lake) == 1  # closed without discard: as if the process had died


def test_remote_lake_journals_in_a_local_cache_keyed_by_the_lake(tmp_path, monkeypatch):
    monkeypatch.setenv(JOURNAL_ENV, str(tmp_path / "journals"))
    one = journal_dir(LakeResource(root="s3://bucket/one"), TABLE)
    two = journal_dir(LakeResource(root="s3://bucket/two"), TABLE)
    assert one.parent.parent.parent == two.parent.parent.parent == (tmp_path / "journals").resolve()
    assert one != two and one.parts[-2:] == ("distill", "completions")
    monkeypatch.delenv(JOURNAL_ENV)
    assert str(journal_dir(LakeResource(root="s3://bucket/one"), TABLE)).startswith(str(Path.home() / ".cache"))


def _started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="refresh_job", run_id=run_id, status=dg.DagsterRunStatus.STARTED, tags=tags))
    return run_id


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_runs_whose_worker_is_gone_are_failed_and_only_those():
    instance = dg.DagsterInstance.ephemeral()
    mine = worker_tags()
    live = _started_run(instance, mine)
    dead = _started_run(instance, worker_tags(_dead_pid()) | {HOST_TAG: mine[HOST_TAG]})
    reused = _started_run(instance, mine | {START_TAG: "1"})  # our pid, but another process's start time
    elsewhere = _started_run(instance, {HOST_TAG: socket.gethostname() + "-other", PID_TAG: str(_dead_pid())})
    untagged = _started_run(instance, {})

    assert sorted(fail_dead_runs(instance, by="a test")) == sorted([dead, reused])
    status = {run_id: instance.get_run_by_id(run_id).status for run_id in (live, dead, reused, elsewhere, untagged)}
    assert status == {
        live: dg.DagsterRunStatus.STARTED,
        dead: dg.DagsterRunStatus.FAILURE,
        reused: dg.DagsterRunStatus.FAILURE,
        elsewhere: dg.DagsterRunStatus.STARTED,
        untagged: dg.DagsterRunStatus.STARTED,
    }
    assert fail_dead_runs(instance, by="a test") == []


def _eval_prompts(n: int) -> pl.DataFrame:
    rows = [
        {"prompt_id": f"ep-{i}", "domain": "physics", "task_type": TASK_TYPES[i % len(TASK_TYPES)],
         "instruction": f"Eval question number {i} about heat flow in thin films.", "context": None,
         "source": "test", "origin": "seed", "eval_set": "es-test"}
        for i in range(n)
    ]
    return pl.DataFrame(rows, schema=EVAL_PROMPT_SCHEMA)


def test_eval_answers_a_killed_run_received_are_not_asked_again(srv, tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    prompts, params = _eval_prompts(10), SamplingParams()

    def client() -> ChatClient:
        return ChatClient(base_url=srv.base_url, model="ext-model", api_key="sk-test", max_concurrency=2)

    # What a run killed after 4 answers leaves: those answers in its journal, nothing in the table.
    killed = Journal.open(journal_dir(lake, "eval/predictions"), Lineage(run_id="run-killed"))
    run_sync(lambda: predict(prompts.head(4), client(), params, model_id="ext-model", model_kind="external",
                             checkpoint_id=None, on_row=killed.append, progress=False))
    killed.close()
    first = set(srv.stats()["answered"])
    srv.reset()

    stats = _answer(dg.build_asset_context(), lake, prompts, lambda: _client_maker(lambda _: client()), params,
                    model_id="ext-model", model_kind="external", checkpoint_id=None, lineage=Lineage(run_id="run-next"))
    sent = srv.stats()["fingerprints"]
    assert stats["sent"] == 6 and stats["answered"] == 10
    assert len(sent) == 6 and set(sent).isdisjoint(first)
    table = lake.read("eval/predictions")
    assert table.height == 10 and table.filter(pl.col("run_id") == "run-killed").height == 4
    assert list(journal_dir(lake, "eval/predictions").iterdir()) == []
