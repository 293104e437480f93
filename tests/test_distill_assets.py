"""distill/completions → distill/pairs → sft/examples through Dagster, against the scripted teacher
over real HTTP on 127.0.0.1 and real Delta tables."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nexa_assets.distill.assets import distill_completions, distill_pairs
from nexa_assets.distill.completions import teacher_requests
from nexa_assets.distill.task import messages as chat_messages
from nexa_assets.raw.assets import raw_prompts
from nexa_assets.sft.assets import sft_decontamination, sft_examples
from nexa_assets.sft.package import SftConfig, build_examples
from nexa_resources.tables.sft import EXAMPLE_SCHEMA
from nexa_jobs.instance import open_instance as cli_instance
from nexa_jobs.instance import dagster_home
from nexa_resources.inputs import InputsResource
from nexa_resources.journal import journal_dir
from nexa_resources.judge import STRUCTURAL_JUDGE_ID, JudgeResource
from nexa_resources.lake import LakeResource
from nexa_testing.scripted_server import ScriptedServer, fingerprint
from nexa_resources.teacher import TeacherResource

MODEL = "scripted-teacher"
ALL_FAULTS = ["429", "500", "timeout", "malformed", "drop"]
CHAIN = [raw_prompts, distill_completions, distill_pairs, sft_examples, sft_decontamination]
SECRET = "sk-nexa-test-SECRET-4242"
REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture()
def inputs(tmp_path) -> InputsResource:
    folder = tmp_path / "inputs"
    folder.mkdir()
    return InputsResource(uri=str(folder))


@pytest.fixture(scope="module")
def raw_lake_dir(tmp_path_factory) -> Path:
    """raw/prompts materialized once for the module; tests copy it instead of re-ingesting."""
    root = tmp_path_factory.mktemp("raw") / "lake"
    inputs = tmp_path_factory.mktemp("empty_inputs")
    result = dg.materialize(
        [raw_prompts],
        resources={"lake": LakeResource(root=str(root)), "inputs": InputsResource(uri=str(inputs))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return root


@pytest.fixture()
def raw_lake(raw_lake_dir, tmp_path) -> LakeResource:
    """A fresh lake that already holds raw/prompts."""
    root = tmp_path / "lake"
    shutil.copytree(raw_lake_dir, root)
    return LakeResource(root=str(root))


def teacher(srv: ScriptedServer, **kw) -> TeacherResource:
    """A teacher on the scripted server, asked without a worked example, so a request is [system, user] (the
    example's turns are covered by tests/test_teacher_context.py)."""
    settings = {"api_key": "sk-test", "max_retries": 2, "backoff_base_s": 0.01, "timeout_s": 10.0,
                "worked_examples": 0} | kw
    return TeacherResource(base_url=srv.base_url, model=MODEL, **settings)


def materialize(
    assets: list,
    lake: LakeResource,
    teacher: TeacherResource,
    inputs: InputsResource | None = None,
    *,
    instance: dg.DagsterInstance | None = None,
    completions: dict | None = None,
    pairs: dict | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    ops = {"distill__completions": {"config": {"max_prompts": 20, "per_cell": None, **(completions or {})}}}
    if pairs:
        ops["distill__pairs"] = {"config": pairs}
    selected = {a.op.name for a in assets if isinstance(a, dg.AssetsDefinition)}
    resources = {"lake": lake, "teacher": teacher, "judge": JudgeResource()}
    if inputs is not None:
        resources["inputs"] = inputs
    return dg.materialize(
        assets,
        resources=resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        run_config={"ops": {k: v for k, v in ops.items() if k in selected}},
        raise_on_error=raise_on_error,
    )


def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def planned_requests(lake: LakeResource, t: TeacherResource, max_prompts: int) -> list[dict]:
    """The requests distill/completions builds for the first `max_prompts` train prompts."""
    prompts = lake.read("raw/prompts").filter(pl.col("split") == "train").sort("prompt_id").head(max_prompts)
    return teacher_requests(prompts, t)


def fp(request: dict) -> str:
    """The server-side fingerprint of a request: the configured model and [system, user]."""
    return fingerprint(MODEL, chat_messages(request["system_prompt"], request["user_prompt"]))


# ----------------------------------------------------------------------------------- the chain


def test_chain_materializes_with_usage_cost_and_metadata(srv, lake, inputs):
    t = teacher(srv, prices={MODEL: [1.0, 2.0]})
    result = materialize(CHAIN, lake, t, inputs)
    assert result.success
    assert all(checks(result).values()), checks(result)

    completions = lake.read("distill/completions")
    originals = completions.filter(pl.col("regenerated_from").is_null())
    assert originals.height == 20
    assert completions["request_id"].n_unique() == completions.height
    assert completions["error"].null_count() == completions.height
    for row in completions.iter_rows(named=True):
        assert row["teacher_model"] == MODEL and row["attempts"] == 1 and row["latency_ms"] > 0
        assert row["finish_reason"] == "stop" and row["completion"]
        assert row["prompt_tokens"] == len(row["system_prompt"].split()) + len(row["user_prompt"].split())
        assert row["completion_tokens"] == len(row["completion"].split())
        expected = (row["prompt_tokens"] * 1.0 + row["completion_tokens"] * 2.0) / 1e6
        assert row["cost_usd"] == pytest.approx(expected, rel=1e-9) and row["cost_usd"] > 0

    pairs = lake.read("distill/pairs")
    assert set(pairs["request_id"]) == set(completions["request_id"])
    assert pairs.schema["reject_reasons"] == pl.List(pl.String())
    for row in pairs.iter_rows(named=True):
        assert isinstance(row["reject_reasons"], list)
        assert row["passed"] == (row["reject_reasons"] == [])

    examples = lake.read("sft/examples")
    assert examples.height >= 10
    passed = set(pairs.filter(pl.col("passed"))["request_id"])
    by_request = dict(zip(completions["request_id"], completions["completion"]))
    for row in examples.iter_rows(named=True):
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert row["messages"][1]["content"] == row["prompt"]
        assert row["messages"][2]["content"] == row["completion"] == by_request[row["request_id"]]
        assert row["request_id"] in passed and row["split"] in ("train", "val")

    meta = metadata(result, "distill/completions")
    assert meta["requests"] == 20 and meta["requests_sent"] == 20 and meta["requests_cached"] == 0
    assert meta["errors"] == 0
    assert meta["cost_usd_this_run"] == pytest.approx(float(originals["cost_usd"].sum()), abs=1e-6)
    assert meta["prompt_tokens_sent"] == originals["prompt_tokens"].sum()
    assert srv.stats()["requests"] == completions.height  # originals + regenerations, each once


def test_remote_teacher_without_a_price_records_unknown_cost(srv, raw_lake):
    """A remote model missing from the price table costs "unknown" (null), not $0, so spend rules can see it."""
    t = teacher(srv)  # MODEL is in no price table
    result = materialize([distill_completions], raw_lake, t, completions={"max_prompts": 3})
    assert result.success
    completions = raw_lake.read("distill/completions")
    assert completions.height == 3 and completions["cost_usd"].null_count() == 3
    meta = metadata(result, "distill/completions")
    assert meta["cost_usd_this_run"].startswith("unknown") and meta["cost_usd_total"].startswith("unknown")


def test_rematerializing_completions_sends_nothing(srv, raw_lake):
    t = teacher(srv)
    first = materialize([distill_completions], raw_lake, t)
    assert metadata(first, "distill/completions")["requests_sent"] == 20
    before = raw_lake.read("distill/completions").sort("request_id")
    version = raw_lake.version("distill/completions")
    sent = srv.stats()["requests"]

    again = materialize([distill_completions], raw_lake, t)
    assert srv.stats()["requests"] == sent  # not a single request
    meta = metadata(again, "distill/completions")
    assert meta["requests_sent"] == 0 and meta["requests_cached"] == 20 and meta["requests"] == 20
    assert raw_lake.version("distill/completions") == version
    assert raw_lake.read("distill/completions").sort("request_id").equals(before)


# ------------------------------------------------------------------------------------- faults


def _faulted(seed: int, fingerprint_: str, attempt: int, rate: float) -> bool:
    """The scripted server's documented fault choice: hash(seed, fingerprint, attempt) < rate."""
    digest = hashlib.sha256(f"{seed}:{fingerprint_}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def test_faults_every_request_answered_or_recorded_then_only_errors_retried(srv, raw_lake):
    n, rate, retries = 30, 0.2, 1
    t = teacher(srv, max_retries=retries, timeout_s=0.5, max_error_rate=1.0, max_concurrency=8)
    requests = planned_requests(raw_lake, t, n)
    fps = {r["request_id"]: fp(r) for r in requests}
    # A seed under which some requests exhaust their retries (the outcome is deterministic per seed).
    seed = next(
        s for s in range(200)
        if sum(all(_faulted(s, f, a, rate) for a in range(1, retries + 2)) for f in fps.values()) >= 2
    )
    expected_errors = {rid for rid, f in fps.items() if all(_faulted(seed, f, a, rate) for a in (1, 2))}
    expected_attempts = {rid: 2 if _faulted(seed, f, 1, rate) else 1 for rid, f in fps.items()}
    srv.control(fault_rate=rate, faults=ALL_FAULTS, retry_after_s=0.01, timeout_sleep_s=1.5, seed=seed)

    result = materialize([distill_completions], raw_lake, t, completions={"max_prompts": n, "batch_size": 4})
    assert result.success
    table = raw_lake.read("distill/completions")
    assert table.height == n == len(requests)
    assert table["request_id"].n_unique() == n and set(table["request_id"]) == set(fps)
    errors = table.filter(pl.col("error").is_not_null())
    assert set(errors["request_id"]) == expected_errors
    assert errors["completion"].null_count() == errors.height
    assert set(errors["attempts"]) == {retries + 1}
    assert dict(zip(table["request_id"], table["attempts"])) == expected_attempts
    stats = srv.stats()
    assert sum(stats["by_fault"].values()) >= 3
    assert stats["requests"] == table["attempts"].sum()
    meta = metadata(result, "distill/completions")
    assert meta["requests_sent"] == n and meta["errors"] == len(expected_errors)

    # Faults off: the re-run sends exactly the errored requests, once each.
    srv.control(reset=True)
    again = materialize([distill_completions], raw_lake, t, completions={"max_prompts": n})
    assert again.success
    sent = srv.stats()["fingerprints"]
    assert sorted(sent) == sorted(fps[rid] for rid in expected_errors)
    meta = metadata(again, "distill/completions")
    assert meta["requests_sent"] == len(expected_errors) and meta["requests_cached"] == n - len(expected_errors)
    final = raw_lake.read("distill/completions")
    assert final.height == n and final["request_id"].n_unique() == n
    assert final["error"].null_count() == n and final["completion"].null_count() == 0


def test_error_rate_over_the_limit_fails_the_run_and_keeps_the_rows(srv, raw_lake):
    srv.control(fault_rate=1.0, faults=["500"])
    t = teacher(srv, max_retries=0)
    result = materialize([distill_completions], raw_lake, t, completions={"max_prompts": 10}, raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.event_specific_data.error.message
    assert "10 of 10 teacher requests hold an error" in message and "HTTP 500 ×10" in message, message
    assert checks(result) == {"error_rate": False}
    table = raw_lake.read("distill/completions")
    assert table.height == 10
    assert all(e.startswith("HTTP 500") for e in table["error"]) and set(table["attempts"]) == {1}
    assert table["completion"].null_count() == 10
    assert srv.stats()["requests"] == 10

    # The exception raised to a caller is the same Failure.
    srv.control(reset=True, fault_rate=1.0, faults=["429"], retry_after_s=0.01)
    with pytest.raises(dg.Failure, match=r"10 of 10 teacher requests hold an error .*HTTP 429"):
        materialize([distill_completions], raw_lake, t, completions={"max_prompts": 10})


def test_error_rate_is_the_tables_not_the_retry_runs(srv, raw_lake):
    """Retrying a few failed rows that fail again must not fail a table that is mostly answered."""
    n, rate = 20, 0.15
    t = teacher(srv, max_retries=0, max_error_rate=0.2)
    fps = [fp(r) for r in planned_requests(raw_lake, t, n)]
    seed = next(s for s in range(500) if 1 <= sum(_faulted(s, f, 1, rate) for f in fps) <= 3)
    srv.control(fault_rate=rate, faults=["500"], seed=seed)
    first = materialize([distill_completions], raw_lake, t, completions={"max_prompts": n})
    assert first.success
    failed = raw_lake.read("distill/completions")["error"].is_not_null().sum()
    assert 1 <= failed <= 3

    srv.control(reset=True, fault_rate=1.0, faults=["500"])  # every retry fails again: 100% of this run
    again = materialize([distill_completions], raw_lake, t, completions={"max_prompts": n})
    assert again.success and checks(again) == {"error_rate": True}
    meta = metadata(again, "distill/completions")
    assert meta["requests_sent"] == failed and meta["errors"] == failed
    check = again.get_asset_check_evaluations()[0].metadata
    assert check["failed_in_table"].value == failed and check["error_rate"].value == round(failed / n, 4)


_CRASH_SCRIPT = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from nexa_assets.distill.assets import distill_completions
    from nexa_resources.lake import LakeResource
    from nexa_resources.teacher import TeacherResource

    root, base_url, model = sys.argv[1:4]
    dg.materialize(
        [distill_completions],
        resources={
            "lake": LakeResource(root=root),
            "teacher": TeacherResource(
                base_url=base_url, model=model, api_key="sk-test", max_concurrency=4, worked_examples=0
            ),
        },
        instance=dg.DagsterInstance.get(),  # DAGSTER_HOME
        # No batch merge before the kill: every answer received is held in memory (and the journal).
        run_config={"ops": {"distill__completions": {"config": {"max_prompts": 60, "per_cell": None, "batch_size": 1000}}}},
    )
    print("finished", flush=True)
    """
)


def _kill_mid_collection(srv: ScriptedServer, lake: LakeResource, log: Path) -> set[str]:
    """Run the crash script, hang every request after the first answers, kill -9 it; the fingerprints answered."""
    srv.control(latency_ms=100)
    with log.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", _CRASH_SCRIPT, lake.root, srv.base_url, MODEL],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TQDM_DISABLE": "1"},
        )
    try:
        deadline = time.monotonic() + 60
        while child.poll() is None and len(srv.stats()["answered"]) < 12 and time.monotonic() < deadline:
            time.sleep(0.02)
        # From now on requests hang: the answers sent so far are all the child will receive.
        srv.control(faults=["timeout"], fault_rate=1.0, timeout_sleep_s=30)
        answered, settled = srv.stats()["answered"], time.monotonic()
        while child.poll() is None and time.monotonic() - settled < 1.0:
            time.sleep(0.1)
            if srv.stats()["answered"] != answered:
                answered, settled = srv.stats()["answered"], time.monotonic()
        assert child.poll() is None, f"child ended before the kill:\n{log.read_text()[-3000:]}"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert len(answered) == len(set(answered)) >= 12
    return set(answered)


def test_killed_collection_resends_only_what_was_in_flight(srv, raw_lake, tmp_path, monkeypatch):
    """kill -9 mid-collection: the re-run sends no request whose answer had arrived, and the dead run is failed."""
    n = 60
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    dagster_home()
    answered = _kill_mid_collection(srv, raw_lake, tmp_path / "child.log")
    assert not raw_lake.exists("distill/completions")  # nothing was merged: the answers live in the journal only
    [killed] = dg.DagsterInstance.get().get_runs()
    assert killed.status == dg.DagsterRunStatus.STARTED

    instance = cli_instance()  # what `nexa materialize` does first
    failed = instance.get_run_by_id(killed.run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    [failure] = [e for e in instance.all_logs(killed.run_id) if e.dagster_event_type == dg.DagsterEventType.RUN_FAILURE]
    assert f"pid {killed.tags['nexa/worker_pid']}" in failure.message and "is gone" in failure.message

    srv.control(reset=True)
    t = teacher(srv, max_concurrency=4)
    requests = planned_requests(raw_lake, t, n)
    result = materialize([distill_completions], raw_lake, t, completions={"max_prompts": n})
    assert result.success
    sent = srv.stats()["fingerprints"]
    assert set(sent).isdisjoint(answered)
    assert len(sent) == len(set(sent)) == n - len(answered)
    assert set(sent) | answered == {fp(r) for r in requests}
    meta = metadata(result, "distill/completions")
    assert meta["requests_cached"] == len(answered) and meta["requests_sent"] == n - len(answered)
    final = raw_lake.read("distill/completions")
    assert final.height == n and final["request_id"].n_unique() == n and final["error"].null_count() == n
    assert set(final.filter(pl.col("run_id") == killed.run_id)["request_id"]) == {
        r["request_id"] for r in requests if fp(r) in answered
    }
    assert list(journal_dir(raw_lake, "distill/completions").iterdir()) == []


# ------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("how", ["inline", "env"])
def test_api_key_reaches_the_server_and_nothing_else(srv, lake, inputs, capfd, monkeypatch, how):
    monkeypatch.setenv("NEXA_TEST_TEACHER_KEY", SECRET)
    key = SECRET if how == "inline" else dg.EnvVar("NEXA_TEST_TEACHER_KEY")
    instance = dg.DagsterInstance.ephemeral()
    # One forced retry per request, so error paths run too (their messages must not carry the key).
    srv.control(fail_first_n=1, faults=["500"])
    result = materialize(CHAIN, lake, teacher(srv, api_key=key), inputs, instance=instance,
                         completions={"max_prompts": 10})
    assert result.success
    assert srv.stats()["auth_headers"] == [f"Bearer {SECRET}"]

    texts: dict[str, str] = {}
    texts["events"] = "\n".join(dg.serialize_value(e) for e in instance.all_logs(result.run_id))
    texts["result_events"] = "\n".join(repr(e) for e in result.all_events)
    run = instance.get_run_by_id(result.run_id)
    texts["run"] = dg.serialize_value(run)
    if how == "env":  # an inline key is part of the resource definition Dagster snapshots; EnvVar is not
        texts["job_snapshot"] = dg.serialize_value(instance.get_job_snapshot(run.job_snapshot_id))
    for spec in lake.tables():
        texts[f"table {spec.path}"] = json.dumps(lake.read(spec.path).to_dicts(), default=str)
        texts[f"history {spec.path}"] = json.dumps(lake.history(spec.path), default=str)
    assert {"table distill/completions", "table distill/pairs", "table sft/examples"} <= set(texts)
    root = Path(lake.root)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any("_delta_log" in p.parts for p in files)
    for path in files:
        texts[str(path)] = path.read_bytes().decode("latin-1")
    captured = capfd.readouterr()
    texts["stdout"], texts["stderr"] = captured.out, captured.err
    assert "distill__completions" in texts["stderr"] + texts["events"]

    leaks = [where for where, text in texts.items() if SECRET in text or SECRET[3:] in text]
    assert leaks == []


# ------------------------------------------------------------------------------ decontamination


def _candidate(prompt_id: str, instruction: str, completion: str, **kw) -> dict:
    return {
        "request_id": f"req-{prompt_id}",
        "prompt_id": prompt_id,
        "domain": "biology",
        "task_type": "hypothesis",
        "instruction": instruction,
        "context": None,
        "completion": completion,
        "judge_mean": 4.0,
    } | kw


def test_build_examples_drops_a_completion_sharing_a_long_run_with_an_eval_prompt():
    eval_instruction = (
        "Why does the growth rate of soil bacteria fall sharply when the nitrate concentration "
        "doubles in a sealed chamber over a week?"
    )
    short_eval = "What limits battery life in cold weather?"
    leaked = " ".join(eval_instruction.split()[2:14])  # exactly 12 words of it
    short = " ".join(eval_instruction.split()[2:13])  # 11 words: allowed
    candidates = pl.DataFrame(
        [
            # 12 words of the eval instruction inside the answer, in capitals and followed by a comma.
            _candidate("p1", "Propose hypotheses on how leaf stomata respond to drought.",
                       f"Hypotheses. 1. As the literature says, {leaked.upper()}, so the outcome is X."),
            _candidate("p2", "Propose hypotheses on how roots sense gravity in low light.",
                       f"Hypotheses. 1. Unrelated, but: {short}; outcome measured in mm."),
            # The eval instruction itself, differing only in case and punctuation.
            _candidate("p3", eval_instruction.replace("soil", "SOIL").rstrip("?") + "!",
                       "A fresh answer about something else entirely."),
            _candidate("p4", "what limits  battery life in cold weather", "Another unrelated answer, in full."),
        ]
    )
    eval_prompts = [{"instruction": eval_instruction, "context": None}, {"instruction": short_eval, "context": None}]
    examples, stats = build_examples(candidates, eval_prompts, SftConfig())
    assert stats["contaminated"] == 3 and stats["candidates"] == 4
    assert examples["prompt_id"].to_list() == ["p2"]
    assert stats["exact_duplicates"] == stats["near_duplicates"] == 0


def test_decontamination_check_fails_on_a_planted_eval_example(raw_lake):
    prompts = raw_lake.read("raw/prompts")
    eval_row = prompts.filter(pl.col("split") == "eval").sort("prompt_id").row(0, named=True)
    train_rows = prompts.filter(pl.col("split") == "train").sort("prompt_id").head(2).to_dicts()
    long_eval = next(
        r for r in prompts.filter(pl.col("split") == "eval").sort("prompt_id").iter_rows(named=True)
        if len(r["instruction"].split()) >= 12
    )
    leaked_completion = "As discussed: " + " ".join(long_eval["instruction"].split()[:12]) + " and more."

    def example(row: dict, completion: str) -> dict:
        return {
            "example_id": f"ex-{row['prompt_id']}",
            "prompt_id": row["prompt_id"],
            "request_id": f"req-{row['prompt_id']}",
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": row["instruction"]},
                {"role": "assistant", "content": completion},
            ],
            "prompt": row["instruction"],
            "completion": completion,
            "domain": row["domain"],
            "task_type": row["task_type"],
            "split": "train",
            "judge_mean": 4.0,
        }

    rows = [example(eval_row, "An answer."), example(train_rows[0], "A clean answer."),
            example(train_rows[1], leaked_completion)]
    raw_lake.write("sft/examples", pl.DataFrame(rows, schema=EXAMPLE_SCHEMA), mode="merge")

    check = sft_decontamination(dg.build_asset_check_context(), lake=raw_lake)
    assert not check.passed
    meta = {k: getattr(v, "value", v) for k, v in check.metadata.items()}
    assert meta["contaminated"] == 2 and meta["examples"] == 3
    hits = {h["example_id"]: h["why"] for h in meta["sample"]}
    assert hits == {
        f"ex-{eval_row['prompt_id']}": "prompt is in the eval split",
        f"ex-{train_rows[1]['prompt_id']}": "shares a 12-word run with an eval prompt",
    }
    [spec] = sft_decontamination.check_specs
    assert spec.blocking


# --------------------------------------------------------------------------------- regeneration


def test_rejected_answers_are_regenerated_once_and_judged_like_the_rest(srv, raw_lake):
    t = teacher(srv)
    # Every fingerprint's first answer is cut off (finish_reason "length") → rejected as truncated.
    srv.control(fail_first_n=1, faults=["length"])
    first = materialize([distill_completions], raw_lake, t, completions={"max_prompts": 10})
    assert first.success
    originals = raw_lake.read("distill/completions")
    assert originals.height == 10 and set(originals["finish_reason"]) == {"length"}

    srv.control(reset=True)  # the teacher now answers in full
    result = materialize([distill_pairs, sft_examples], raw_lake, t)
    assert result.success
    pairs = raw_lake.read("distill/pairs")
    completions = raw_lake.read("distill/completions")
    parents = pairs.filter(pl.col("regenerated_from").is_null())
    children = pairs.filter(pl.col("regenerated_from").is_not_null())
    assert parents.height == 10 and not parents["passed"].any()
    assert all("truncated" in reasons for reasons in parents["reject_reasons"])
    # One regeneration per rejected pair, linked to it in both tables, asking about what failed.
    assert sorted(children["regenerated_from"]) == sorted(parents["request_id"])
    regen = completions.filter(pl.col("regenerated_from").is_not_null())
    assert dict(zip(regen["request_id"], regen["regenerated_from"])) == dict(
        zip(children["request_id"], children["regenerated_from"])
    )
    originals_by_id = {r["request_id"]: r for r in originals.iter_rows(named=True)}
    for row in regen.iter_rows(named=True):
        parent = originals_by_id[row["regenerated_from"]]
        assert row["prompt_id"] == parent["prompt_id"] and row["request_id"] != parent["request_id"]
        assert "cut off" in row["user_prompt"] and parent["user_prompt"] in row["user_prompt"]
        assert row["finish_reason"] == "stop" and row["error"] is None
    sent = srv.stats()["fingerprints"]
    assert sorted(sent) == sorted(fp(r) for r in regen.iter_rows(named=True))
    # The same filters and judge: every child was judged, and the verdict follows its reasons.
    # The same filters and judge: children that pass every filter are judged, the rest carry their
    # filter reasons and are not judged.
    for row in children.iter_rows(named=True):
        assert row["passed"] == (row["reject_reasons"] == []) and "truncated" not in row["reject_reasons"]
        judged = row["judge_model"] == STRUCTURAL_JUDGE_ID
        assert judged == (not row["reject_reasons"] or row["reject_reasons"][0].startswith("judge_"))
        assert (row["judge_mean"] is not None) == judged
    # the scripted teacher writes each answer for its own prompt, so every complete one passes
    assert children["passed"].all()
    meta = metadata(result, "distill/pairs")
    assert meta["regenerated_this_run"] == 10 and meta["judged_this_run"] == 20
    examples = raw_lake.read("sft/examples")
    assert set(examples["request_id"]) <= set(children.filter(pl.col("passed"))["request_id"])

    # A re-run neither asks the teacher again nor regenerates anything.
    srv.control(reset=True)
    again = materialize([distill_pairs], raw_lake, t)
    assert srv.stats()["requests"] == 0
    meta = metadata(again, "distill/pairs")
    assert meta["regenerated_this_run"] == 0 and meta["judged_this_run"] == 0
    assert raw_lake.read("distill/pairs").height == 20


def test_per_cell_thins_the_seed_pack_but_answers_every_user_file_prompt(srv, lake, inputs):
    rows = [
        {"domain": "physics", "task_type": "methodology", "instruction": f"Design an assay for sample batch {i}."}
        for i in range(3)
    ]
    Path(inputs.uri, "mine.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = materialize(
        [raw_prompts, distill_completions], lake, teacher(srv), inputs, completions={"per_cell": 1, "max_prompts": None}
    )
    assert result.success
    prompts = lake.read("raw/prompts")
    answered = set(lake.read("distill/completions")["prompt_id"])
    mine = prompts.filter(pl.col("origin") == "file")
    train_mine = set(mine.filter(pl.col("split") == "train")["prompt_id"])
    assert train_mine and train_mine <= answered  # every train prompt of the user's file
    seeds = prompts.filter((pl.col("origin") == "seed") & (pl.col("split") == "train"))
    assert len(answered & set(seeds["prompt_id"])) == 8  # one seed prompt per cell
