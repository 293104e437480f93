"""The LLM judge against the scripted OpenAI-compatible server on 127.0.0.1: the rubric prompt, parsed verdicts,
bad verdicts as null scores with their reason, retries, the request cache, and what judging costs (per row,
in `nexa sql`, and on the Costs page)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from nexa_assets.distill.assets import distill_completions, distill_pairs
from nexa_assets.evaluate.assets import eval_scores
from nexa_assets.evaluate.judge_costs import judge_spend
from nexa_core.rubric import format_judge_messages, load_rubric
from nexa_resources.tables.eval import EVAL_PROMPT_SCHEMA, PREDICTION_SCHEMA, SCORE_SCHEMA
from nexa_assets.evaluate.scoring import score_rows
from nexa_assets.raw.assets import raw_prompts
from nexa_jobs.loop_report import judge_by_round
from nexa_resources.inputs import InputsResource
from nexa_resources.judge import JudgeCache, JudgeResource
from nexa_resources.lake import LakeResource, Lineage
from nexa_testing.scripted_server import ScriptedServer, answer_for, fingerprint, verdict_for
from nexa_resources.teacher import TeacherResource

JUDGE_MODEL = "scripted-judge"
PRICE = (2.0, 8.0)  # USD per 1M tokens: not in the built-in table, so it comes from the `prices` config
NEXA = str(Path(sys.executable).parent / "nexa")
APP = Path(__file__).resolve().parents[1] / "nexa_ui" / "app.py"
RUBRIC = load_rubric()


def llm_judge(srv: ScriptedServer, **kw) -> JudgeResource:
    settings = {"model": JUDGE_MODEL, "api_key": "sk-judge", "max_retries": 3, "backoff_base_s": 0.01,
                "timeout_s": 10.0, "prices": {JUDGE_MODEL: list(PRICE)}} | kw
    return JudgeResource(kind="llm", base_url=srv.base_url, **settings)


def items(n: int = 4) -> list[dict]:
    tasks = ["hypothesis", "methodology"]
    out = []
    for i in range(n):
        task = tasks[i % 2]
        instruction = f"Propose a {'hypotheses' if task == 'hypothesis' else 'protocol'} on heat flow in film {i}."
        out.append({"owner": f"row-{i}", "task_type": task, "instruction": instruction, "context": None,
                    "answer": answer_for(f"Task: {instruction}"), "finish_reason": "stop"})
    return out


def sent_messages(item: dict) -> list[dict]:
    return format_judge_messages(RUBRIC, item["task_type"], item["instruction"], item["context"], item["answer"])


def words(messages: list[dict]) -> int:
    return sum(len(m["content"].split()) for m in messages)


def usd(prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * PRICE[0] + completion_tokens * PRICE[1]) / 1_000_000


# ------------------------------------------------------------------------------------------- the judge call


def test_rubric_prompt_goes_out_and_verdicts_are_parsed_and_priced(srv):
    batch = items()
    verdicts = llm_judge(srv).judge_many(batch)

    system = sent_messages(batch[0])[0]["content"]
    assert "integer from 1 to 5" in system
    for metric in RUBRIC.metrics:
        assert f'"{metric}": <1-5>' in system and RUBRIC.descriptions[metric]["question"] in system
    assert batch[0]["answer"] in sent_messages(batch[0])[1]["content"]
    stats = srv.stats()
    assert sorted(stats["fingerprints"]) == sorted(fingerprint(JUDGE_MODEL, sent_messages(i)) for i in batch)
    assert stats["by_verdict"] == {"ok": 4} and stats["auth_headers"] == ["Bearer sk-judge"]
    for item, verdict in zip(batch, verdicts, strict=True):
        expected = verdict_for(list(RUBRIC.metrics), 1, 5, item["answer"])
        assert verdict.scores == expected["scores"] and verdict.error is None
        assert verdict.lacking == expected["lacking"]
        assert verdict.prompt_tokens == words(sent_messages(item))
        assert verdict.completion_tokens == len(json.dumps(expected).split())
        assert verdict.cost_usd == pytest.approx(usd(verdict.prompt_tokens, verdict.completion_tokens))


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("unparsable", "judge_unparsable: no JSON object in the judge's answer"),
        ("refusal", "judge_refused: I can't help with grading this answer."),
        ("off_scale", "judge_unparsable: score for 'correctness' is 7, outside 1-5"),
    ],
)
def test_a_bad_verdict_is_a_null_score_with_its_reason(srv, fault, error):
    srv.control(verdict_fault_rate=1.0, verdict_faults=[fault])
    verdicts = llm_judge(srv).judge_many(items(2))
    assert srv.stats()["by_verdict"] == {fault: 2}
    assert [(v.scores, v.error) for v in verdicts] == [(None, error)] * 2
    assert all(v.prompt_tokens > 0 and v.cost_usd > 0 for v in verdicts)  # paid for, though unusable


def test_retries_on_429_and_500_then_the_verdict(srv):
    srv.control(faults=["429", "500"], fail_first_n=2, retry_after_s=0)
    verdicts = llm_judge(srv).judge_many(items(3))
    assert srv.stats()["by_status"] == {"429": 3, "500": 3, "200": 3}
    assert all(v.ok for v in verdicts)


def test_request_cache_pays_once_and_never_for_failures(srv, lake):
    cache = JudgeCache(lake, Lineage(run_id="t", round=0))
    batch = items(4)
    duplicate = {**batch[0], "owner": "row-dup"}  # the same request for another row: sent once, paid by row-0
    srv.control(faults=["429"], fail_first_n=1)
    failed = llm_judge(srv, max_retries=0).judge_many(batch[:1], cache=cache)
    assert failed[0].error.startswith("judge_error: HTTP 429") and failed[0].cost_usd == 0.0
    assert not lake.exists("eval/judge_requests")  # a failure is asked again, never cached
    srv.control(reset=True)

    first = llm_judge(srv).judge_many([*batch, duplicate], cache=cache)
    assert srv.stats()["requests"] == 4
    assert first[4].scores == first[0].scores and (first[4].prompt_tokens, first[4].cost_usd) == (0, 0.0)
    paid = lake.read("eval/judge_requests")
    assert paid.height == 4 and sum(v.cost_usd for v in first) == pytest.approx(paid["cost_usd"].sum())

    again = llm_judge(srv).judge_many([*batch, duplicate], cache=cache)
    assert srv.stats()["requests"] == 4  # nothing sent the second time
    assert again == first  # same verdicts, the same rows carry the cost they were bought for


def test_unknown_price_is_null_never_zero(srv):
    [verdict] = llm_judge(srv, prices={}).judge_many(items(1))
    assert verdict.prompt_tokens > 0 and verdict.cost_usd is None
    assert llm_judge(srv, model="gpt-4o-mini").judge_price() == (0.15, 0.60)  # the built-in table


def test_from_env_defaults_to_an_llm_judge_other_than_the_teacher_when_a_key_is_set(monkeypatch):
    for var in ("NEXA_JUDGE", "NEXA_JUDGE_BASE_URL", "NEXA_JUDGE_MODEL", "NEXA_JUDGE_API_KEY", "OPENAI_API_KEY",
                "NEXA_TEACHER_MODEL"):
        monkeypatch.delenv(var, raising=False)
    assert JudgeResource.from_env().judge_model == "structural-v2"  # offline default
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    judge = JudgeResource.from_env()
    assert (judge.kind, judge.base_url, judge.judge_model) == ("llm", "https://api.openai.com/v1", "gpt-4.1-mini")
    monkeypatch.setenv("NEXA_TEACHER_MODEL", "gpt-4.1-mini")
    assert JudgeResource.from_env().judge_model == "gpt-4o-mini"
    monkeypatch.setenv("NEXA_JUDGE", "structural")
    assert JudgeResource.from_env().kind == "structural"


# ------------------------------------------------------------------------------ eval/scores, end to end


def plant_eval(lake: LakeResource) -> None:
    """6 eval prompts answered by two models; model b's answer to ep-5 failed."""
    tasks = ["hypothesis", "methodology"]
    prompts = [{"prompt_id": f"ep-{i}", "domain": "physics", "task_type": tasks[i % 2],
                "instruction": f"Propose a {'hypotheses' if i % 2 == 0 else 'protocol'} on heat flow in film {i}.",
                "context": None, "source": "test", "origin": "seed", "eval_set": "es-1"} for i in range(6)]
    predictions = [
        {"model_id": model, "prompt_id": p["prompt_id"], "model_kind": "external", "model_label": model,
         "domain": "physics", "task_type": p["task_type"], "finish_reason": "stop", "eval_set": "es-1",
         "prediction": None if failed else answer_for(f"Task: {p['instruction']} ({model})"),
         "error": "HTTP 500: scripted" if failed else None}
        for model in ("model-a", "model-b") for p in prompts
        for failed in [model == "model-b" and p["prompt_id"] == "ep-5"]
    ]
    lineage = Lineage(run_id="plant", round=0)
    lake.write("eval/prompts", pl.DataFrame(prompts, schema=EVAL_PROMPT_SCHEMA), mode="merge", lineage=lineage)
    lake.write("eval/predictions", pl.DataFrame(predictions, schema=PREDICTION_SCHEMA), mode="merge", lineage=lineage)


def materialize_scores(lake: LakeResource, judge: JudgeResource, rescore: bool = False) -> None:
    result = dg.materialize([eval_scores], resources={"lake": lake, "judge": judge},
                            instance=dg.DagsterInstance.ephemeral(),
                            run_config={"ops": {"eval__scores": {"config": {"rescore": rescore}}}})
    assert result.success


def nexa_sql(lake: LakeResource, query: str) -> list[dict]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NEXA_")}, "NEXA_LAKE_ROOT": lake.root}
    out = subprocess.run([NEXA, "sql", query, "--format", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def costs_page(lake: LakeResource, monkeypatch) -> AppTest:
    monkeypatch.setenv("NEXA_LAKE_ROOT", lake.root)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page("views/costs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def page_table(at: AppTest, key: str) -> pl.DataFrame:
    return pl.from_pandas(at.get_by_key(key).dataframe[0].value)


def test_eval_scores_judged_end_to_end_costed_cached_in_sql_and_on_the_costs_page(srv, lake, monkeypatch):
    plant_eval(lake)
    srv.control(verdict_fault_rate=0.4, verdict_faults=["unparsable", "refusal"], seed=3)
    materialize_scores(lake, llm_judge(srv))

    stats = srv.stats()
    assert stats["requests"] == 11  # 12 answers, one failed prediction: never sent to the judge
    bad = sum(n for kind, n in stats["by_verdict"].items() if kind != "ok")
    assert 0 < bad < 11
    scores = lake.read("eval/scores")
    assert scores.height == 12 * len(RUBRIC.metrics)
    failed = scores.filter(pl.col("score").is_null()).group_by("model_id", "prompt_id").agg(pl.col("error").first())
    kinds = failed["error"].str.extract(r"^([a-z_]+):").value_counts().sort("error")
    assert dict(kinds.iter_rows()) == {
        **({"judge_refused": stats["by_verdict"]["refusal"]} if "refusal" in stats["by_verdict"] else {}),
        **({"judge_unparsable": stats["by_verdict"]["unparsable"]} if "unparsable" in stats["by_verdict"] else {}),
        "prediction_failed": 1,
    }
    paid = lake.read("eval/judge_requests")
    assert paid.height == 11
    expected_usd = sum(usd(p, c) for p, c in zip(paid["prompt_tokens"], paid["completion_tokens"]))
    assert scores["judge_cost_usd"].sum() == pytest.approx(expected_usd)
    assert scores["judge_prompt_tokens"].sum() == paid["prompt_tokens"].sum()
    per_answer = scores.group_by("model_id", "prompt_id").agg(pl.col("judge_prompt_tokens").sum())
    item = {"task_type": "hypothesis", "instruction": "Propose a hypotheses on heat flow in film 0.", "context": None,
            "answer": answer_for("Task: Propose a hypotheses on heat flow in film 0. (model-a)")}
    assert per_answer.filter(pl.col("prompt_id") == "ep-0", pl.col("model_id") == "model-a")["judge_prompt_tokens"][0] \
        == words(sent_messages(item))
    assert scores.filter(pl.col("error").str.starts_with("prediction_failed"))["judge_cost_usd"].sum() == 0

    [row] = nexa_sql(lake, "SELECT sum(judge_cost_usd) AS usd, sum(judge_prompt_tokens) AS tokens FROM eval.scores")
    assert row["usd"] == pytest.approx(expected_usd) and int(row["tokens"]) == paid["prompt_tokens"].sum()

    materialize_scores(lake, llm_judge(srv), rescore=True)  # every answer judged again: all from the cache
    assert srv.stats()["requests"] == 11
    again = lake.read("eval/scores")
    assert again["judge_cost_usd"].sum() == pytest.approx(expected_usd)
    assert again.sort("model_id", "prompt_id", "metric")["score"].to_list() == \
        scores.sort("model_id", "prompt_id", "metric")["score"].to_list()

    [summary] = judge_by_round(lake).iter_rows(named=True)  # the per-round summary's judge columns
    assert summary == {"round": 0, "judge_requests": 11, "judge_tokens": int(paid["prompt_tokens"].sum() +
                       paid["completion_tokens"].sum()), "judge_usd": f"{expected_usd:.6f}"}

    at = costs_page(lake, monkeypatch)
    assert page_metric(at, "Judge") == f"${expected_usd:,.4f}"
    judged = page_table(at, "judge_costs").row(0, named=True)
    assert (judged["table"], judged["judge_model"], judged["requests"], judged["verdicts"]) == \
        ("eval.scores", JUDGE_MODEL, 11, 11)
    assert judged["prompt_tokens"] == paid["prompt_tokens"].sum() and judged["cost_usd"] == f"${expected_usd:,.6f}"


def test_unknown_judge_price_shows_unknown_never_zero(srv, lake, monkeypatch):
    plant_eval(lake)
    materialize_scores(lake, llm_judge(srv, prices={}))
    scores = lake.read("eval/scores")
    assert scores.filter(pl.col("judge_prompt_tokens") > 0)["judge_cost_usd"].null_count() > 0
    assert judge_by_round(lake)["judge_usd"].to_list() == ["unknown"]
    at = costs_page(lake, monkeypatch)
    assert page_metric(at, "Judge") == "unknown" and page_metric(at, "Total").endswith("+ unknown")
    assert page_table(at, "judge_costs")["cost_usd"].to_list() == ["unknown"]


def test_old_scores_without_cost_columns_keep_working(lake):
    old = {c: t for c, t in SCORE_SCHEMA.items() if not c.startswith("judge_") or c == "judge_model"}
    row = {"model_id": "m", "prompt_id": "p0", "metric": "clarity", "domain": "physics", "task_type": "hypothesis",
           "judge_model": "structural-v2", "rubric_version": "v2", "score": 4, "eval_set": "es"}
    lake.write("eval/scores", pl.DataFrame([row], schema=old), mode="merge", lineage=Lineage(run_id="old", round=0))
    preds = pl.DataFrame([{"model_id": "m", "prompt_id": "p1", "domain": "physics", "task_type": "hypothesis",
                           "finish_reason": "stop", "error": None, "eval_set": "es"}], schema=PREDICTION_SCHEMA)
    from nexa_core.rubric import JudgeVerdict

    new = score_rows(preds, [JudgeVerdict({m: 3 for m in RUBRIC.metrics}, {}, None, 50, 9, 0.005)],
                     metrics=RUBRIC.metrics, judge_model="gpt-x", rubric_version="v2")
    assert new["judge_prompt_tokens"].to_list() == [10] * 5 and new["judge_completion_tokens"].to_list() == [2] * 4 + [1]
    lake.write("eval/scores", new, mode="merge", lineage=Lineage(run_id="new", round=1))
    table = lake.read("eval/scores")
    assert table.height == 6 and table.filter(pl.col("prompt_id") == "p0")["judge_cost_usd"].to_list() == [None]
    spend = judge_spend(pl.DataFrame(), table)
    assert dict(zip(spend["judge_model"], spend["cost_usd"])) == {"structural-v2": 0.0, "gpt-x": pytest.approx(0.005)}


# ----------------------------------------------------------------------------- distill/pairs, end to end


def test_distill_pairs_judged_by_the_llm_judge_and_re_judged_from_the_cache(srv, tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    (tmp_path / "inputs").mkdir()
    teacher = TeacherResource(base_url=srv.base_url, model="scripted-teacher", api_key="sk-t", worked_examples=0,
                              max_retries=2, backoff_base_s=0.01, timeout_s=10.0)
    resources = {"lake": lake, "teacher": teacher, "judge": llm_judge(srv),
                 "inputs": InputsResource(uri=str(tmp_path / "inputs"))}
    config = {"ops": {"distill__completions": {"config": {"max_prompts": 8, "per_cell": None}},
                      "distill__pairs": {"config": {"regenerate": 0}}}}

    def run(assets: list) -> None:
        result = dg.materialize(assets, resources=resources, instance=dg.DagsterInstance.ephemeral(),
                                run_config={"ops": {k: v for k, v in config["ops"].items()
                                                    if k in {a.op.name for a in assets}}})
        assert result.success

    run([raw_prompts, distill_completions, distill_pairs])
    pairs = lake.read("distill/pairs")
    judged = pairs.filter(pl.col("judge_model") == JUDGE_MODEL)
    stats = srv.stats()
    assert judged.height > 0 and stats["by_verdict"] == {"ok": judged.height}
    assert (judged["judge_prompt_tokens"] > 0).all()
    assert pairs.filter(pl.col("judge_model").is_null())["judge_cost_usd"].to_list() == [0.0] * (pairs.height - judged.height)
    paid = lake.read("eval/judge_requests")
    assert pairs["judge_cost_usd"].sum() == pytest.approx(paid["cost_usd"].sum())
    assert paid["owner"].str.starts_with("distill/pairs:").all()

    shutil.rmtree(Path(lake.root) / "distill" / "pairs")  # every completion is judged again…
    run([distill_pairs])
    assert srv.stats()["requests"] == stats["requests"]  # …and not one judge request is sent
    again = lake.read("distill/pairs").sort("request_id")
    assert again["judge_cost_usd"].to_list() == pairs.sort("request_id")["judge_cost_usd"].to_list()
    assert again["judge_mean"].to_list() == pairs.sort("request_id")["judge_mean"].to_list()

    # A table from before best-of-n and judge costs: its rows keep null costs (unknown), new rows are costed.
    old = again.head(again.height // 2).drop("chosen", "sample_index", "judge_prompt_tokens",
                                               "judge_completion_tokens", "judge_cost_usd", "run_id", "round", "created_at")
    lake.write("distill/pairs", old, mode="overwrite", lineage=Lineage(run_id="old", round=0))
    run([distill_pairs])
    mixed = lake.read("distill/pairs")
    assert mixed.height == pairs.height and mixed["chosen"].sum() == pairs["chosen"].sum()
    assert mixed.filter(pl.col("request_id").is_in(old["request_id"].implode()))["judge_cost_usd"].null_count() == old.height
    assert srv.stats()["requests"] == stats["requests"]
