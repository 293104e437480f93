"""distill/logprobs: teacher top-k log-probabilities per answer token, keyed by (request_id, position), from a
remote endpoint asked with logprobs (the scripted server) and from the local teacher scored in-process; joined
to the answers in SQL; the asset is off by default."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import dagster as dg
import polars as pl
import pytest

from nexa_assets.distill.completions import collect_into_lake
from nexa_assets.distill.logprobs import LOGPROBS_TABLE, load_local_teacher, score_answers, tokenizer_identity
from nexa_assets.distill.logprobs_asset import distill_logprobs
from nexa_assets.distill.task import teacher_request
from nexa_resources.tables.sft import EXAMPLE_SCHEMA
from nexa_core.text import content_hash
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.llm_client import SamplingParams
from nexa_resources.local_model import ensure_local_model
from nexa_testing.scripted_server import ScriptedServer
from nexa_resources.teacher import TeacherResource


def prompt_rows(n: int) -> list[dict]:
    return [
        {"prompt_id": content_hash("lp", i), "domain": "physics", "task_type": ("hypothesis", "methodology")[i % 2],
         "instruction": f"Study how grain size {i} changes thermal conductivity in sintered alumina.", "context": ""}
        for i in range(n)
    ]


def test_default_requests_ask_for_no_logprobs():
    assert "logprobs" not in SamplingParams().as_request()
    asked = SamplingParams(top_logprobs=3)
    assert asked.as_request()["top_logprobs"] == 3 and asked.fingerprint() != SamplingParams().fingerprint()
    assert TeacherResource().top_logprobs == 0
    assert "top_logprobs" not in TeacherResource(base_url="http://x/v1", model="m").sampling().as_request()


@pytest.mark.slow
def test_remote_teacher_logprobs_round_trip_through_the_lake(lake: LakeResource):
    with ScriptedServer() as server:
        teacher = TeacherResource(base_url=server.base_url, model="scripted-teacher", top_logprobs=3,
                                  logprobs_tokenizer=str(ensure_local_model()), best_of=1)
        requests = [teacher_request(r, teacher.model_id, teacher.sampling(), worked_examples=1)
                    for r in prompt_rows(4)]
        context = SimpleNamespace(log=logging.getLogger("test"))
        _, stats = collect_into_lake(context, lake, teacher, requests, Lineage(run_id="test"), batch_size=2)
    assert stats.done == 4 and stats.errors == 0
    completions = lake.read("distill/completions")
    assert completions.height == 4 and "logprobs" not in completions.columns
    table = lake.read(LOGPROBS_TABLE)
    assert table.select("request_id", "position").is_unique().all()
    for row in completions.iter_rows(named=True):
        mine = table.filter(pl.col("request_id") == row["request_id"]).sort("position")
        assert mine["position"].to_list() == list(range(mine.height))
        assert "".join(mine["token"].to_list()) == row["completion"]  # one row per answer token, in order
    assert set(table["top_k"]) == {3} and all(len(t) == 3 for t in table["top_logprobs"])
    assert all(lps == sorted(lps, reverse=True) for lps in table["top_logprobs"].to_list())
    from transformers import AutoTokenizer

    identity = tokenizer_identity(AutoTokenizer.from_pretrained(ensure_local_model()))
    assert set(table["tokenizer"]) == {identity} and set(table["source"]) == {"endpoint"}
    assert table["token_id"].drop_nulls().len() > 0  # token texts that are one SmolLM2 token carry its id
    joined = lake.sql(
        "SELECT c.request_id, count(*) AS n, min(l.position) AS first, max(l.position) AS last "
        "FROM distill.completions c JOIN distill.logprobs l USING (request_id) GROUP BY 1"
    ).to_pylist()
    assert len(joined) == 4 and all(r["first"] == 0 and r["last"] == r["n"] - 1 for r in joined)


@pytest.mark.slow
def test_local_teacher_scores_answers_per_token_and_the_asset_is_off_by_default(lake: LakeResource):
    rows = []
    for i, p in enumerate(prompt_rows(2)):
        answer = f"1. Sinter {i + 2} alumina samples.\n2. Measure conductivity against a control."
        rows.append({
            "example_id": content_hash(p["prompt_id"], "ex"), "prompt_id": p["prompt_id"],
            "request_id": content_hash(p["prompt_id"], "req"),
            "messages": [{"role": "system", "content": "You are a careful scientist."},
                         {"role": "user", "content": p["instruction"]}, {"role": "assistant", "content": answer}],
            "prompt": p["instruction"], "completion": answer, "domain": "physics", "task_type": p["task_type"],
            "split": "train", "judge_mean": 4.0,
        })
    lake.write("sft/examples", pl.DataFrame(rows, schema=EXAMPLE_SCHEMA), mode="merge",
               lineage=Lineage(run_id="test"))
    resources = {"lake": lake, "teacher": TeacherResource()}

    off = dg.materialize([distill_logprobs], resources=resources)
    assert off.success and lake.read(LOGPROBS_TABLE).height == 0  # an empty table: train/checkpoints waits on it
    (event,) = off.get_asset_materialization_events()
    assert event.materialization.metadata["enabled"].value is False

    config = {"ops": {"distill__logprobs": {"config": {"top_k": 4}}}}
    on = dg.materialize([distill_logprobs], resources=resources, run_config=config)
    assert on.success and len(on.get_asset_materialization_events()) == 1
    table = lake.read(LOGPROBS_TABLE)
    model, tokenizer = load_local_teacher()
    for row in rows:
        mine = table.filter(pl.col("request_id") == row["request_id"]).sort("position")
        ids = tokenizer.apply_chat_template(row["messages"], tokenize=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        assert ids[-mine.height:] == mine["token_id"].to_list()  # the answer's tokens, end of turn included
        assert all(lp <= top[0] + 1e-6 for lp, top in zip(mine["logprob"], mine["top_logprobs"]))
    assert set(table["source"]) == {"scored"} and set(table["top_k"]) == {4}
    joined = lake.sql(  # an SFT row beside its teacher probabilities, as `nexa sql` runs it
        "SELECT e.example_id, count(*) AS tokens, max(l.position) AS last FROM sft.examples e "
        "JOIN distill.logprobs l USING (request_id) GROUP BY 1 ORDER BY 1"
    ).to_pylist()
    assert [r["example_id"] for r in joined] == sorted(r["example_id"] for r in rows)
    assert all(r["tokens"] == r["last"] + 1 > 5 for r in joined)
    again = score_answers([{"request_id": "x", "messages": rows[0]["messages"]}], model, tokenizer, top_k=4,
                          teacher_model="local")
    assert again.height == table.filter(pl.col("request_id") == rows[0]["request_id"]).height
    # A second run scores nothing new.
    rerun = dg.materialize([distill_logprobs], resources=resources, run_config=config)
    assert rerun.success and lake.read(LOGPROBS_TABLE).height == table.height


def test_a_round_scores_its_sft_rows_before_training_on_them():
    from nexa_jobs.definitions import defs

    graph = defs.resolve_asset_graph()
    checkpoints = graph.get(dg.AssetKey(["train", "checkpoints"]))
    assert dg.AssetKey(["distill", "logprobs"]) in checkpoints.parent_keys
    refresh = defs.resolve_job_def("refresh_job")
    steps = {node.name: node for node in refresh.graph.node_dict.values()}
    assert {"distill__logprobs", "train__checkpoints"} <= set(steps)
