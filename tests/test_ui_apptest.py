"""Every dashboard page under Streamlit's AppTest on a fixture lake: what a page shows equals the tables.

Expected values are computed here straight from the Delta tables with polars (not through nexa_ui), so a
page that drops, double counts or mislabels rows fails.
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import parse_qsl

import polars as pl
import pytest
import ui_lake  # tests/ui_lake.py (pytest puts tests/ on sys.path: no __init__.py there)
from streamlit.testing.v1 import AppTest

from nexa_resources.tables.distill import METRICS
from nexa_assets.evaluate.stats import t_critical_95

APP = Path(__file__).resolve().parents[1] / "nexa_ui" / "app.py"
PAGES = {"leaderboard": "views/leaderboard.py", "cells": "views/cells.py", "inspector": "views/inspector.py",
         "training": "views/training.py", "costs": "views/costs.py", "sql": "views/sql.py"}


@pytest.fixture(scope="module")
def ui_lake_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("ui") / "lake"
    ui_lake.build(root)
    return str(root)


@pytest.fixture
def lake(ui_lake_root, monkeypatch):
    monkeypatch.setenv("NEXA_LAKE_ROOT", ui_lake_root)
    from nexa_resources.lake import LakeResource

    return LakeResource(root=ui_lake_root)


def open_page(page: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.query_params = dict(query or {})
    at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def follow(at: AppTest, link) -> AppTest:
    """What clicking an st.page_link does: go to its page with its query parameters."""
    at.query_params = dict(parse_qsl(link.proto.query_string))
    at.switch_page(PAGES[link.proto.page.strip("/")]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def frame(at: AppTest, key: str) -> pl.DataFrame:
    try:
        block = at.get_by_key(key)
    except Exception as exc:  # noqa: BLE001 - AppTest's lookup error names the key
        raise AssertionError(f"no table {key!r} on the page: {exc}") from None
    return pl.from_pandas(block.dataframe[0].value)


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r} (labels: {[m.label for m in at.metric]})"
    return values[0]


def weighted(group: pl.DataFrame) -> float:
    return float((group["mean"] * group["n"]).sum() / group["n"].sum())


SOURCE = ["judge_model", "rubric_version", "eval_set"]


def counted_scores(lake, model_id: str) -> pl.DataFrame:
    """The model's eval/scores rows under the judge, rubric and eval set its eval/metrics rows carry."""
    carried = lake.read("eval/metrics").filter(pl.col("model_id") == model_id).select(SOURCE).unique()
    return lake.read("eval/scores").filter(pl.col("model_id") == model_id).join(carried, on=SOURCE)


def t_interval(values: pl.Series) -> tuple[float, int, float, float]:
    """Mean, n and the 95% Student-t interval (clipped to the 1–5 scale) of independent samples."""
    n, mean = values.len(), float(values.mean())
    half = t_critical_95(n - 1) * float(values.std()) / math.sqrt(n)
    return mean, n, max(1.0, mean - half), min(5.0, mean + half)


def per_answer(lake, model_id: str) -> tuple[float, int, float, float]:
    """Overall over answers: each answer's mean of its non-null metric scores is one sample."""
    answers = counted_scores(lake, model_id).group_by("prompt_id").agg(pl.col("score").cast(pl.Float64).mean())
    return t_interval(answers["score"].drop_nulls())


def per_score(lake, model_id: str) -> tuple[float, int, float, float]:
    """The old pooling: every metric score of every answer as its own sample."""
    return t_interval(counted_scores(lake, model_id)["score"].drop_nulls().cast(pl.Float64))


def expected_labels(lake) -> dict[str, str]:
    """model_id → its readable name: the lake's model_label, else "round <r> student" for a checkpoint, else
    the id."""
    models = lake.read("eval/metrics").group_by("model_id").agg(
        pl.col("model_label").drop_nulls().first(), pl.col("model_kind").first(), pl.col("round").max())
    return {
        r["model_id"]: r["model_label"]
        or (f"round {r['round']} student" if r["model_kind"] == "checkpoint" else r["model_id"])
        for r in models.iter_rows(named=True)
    }


# ---------------------------------------------------------------------------------------------- pages


def test_leaderboard_equals_eval_metrics(lake):
    at = open_page("leaderboard")
    metrics = lake.read("eval/metrics")
    shown = frame(at, "leaderboard")
    assert sorted(shown["model_id"].to_list()) == sorted(metrics["model_id"].unique().to_list())
    for row in shown.iter_rows(named=True):
        rows = metrics.filter(pl.col("model_id") == row["model_id"])
        mean, n, low, high = per_answer(lake, row["model_id"])
        assert (row["overall"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, low, high))
        assert row["n"] == n
        assert row["ci_from"] == "per answer"
        assert row["ci_low"] <= row["overall"] <= row["ci_high"]
        for m in METRICS:
            assert row[m] == pytest.approx(weighted(rows.filter(pl.col("metric") == m)))
        assert row["judge_failures"] == rows["judge_failures"].sum()
    overall = {r["model_id"]: r["overall"] for r in shown.iter_rows(named=True)}
    leader = max(overall, key=overall.get)
    assert shown["model_id"][0] == leader
    assert metric(at, "Leader") == leader
    assert metric(at, "Leader overall score") == f"{overall[leader]:.2f}"
    assert metric(at, "Models evaluated") == str(metrics["model_id"].n_unique())

    # costs: GPU $ of each checkpoint's training, $ of each model's eval answers
    checkpoints = lake.read("train/checkpoints")
    predictions = lake.read("eval/predictions")
    for row in shown.iter_rows(named=True):
        ckpt = checkpoints.filter(pl.col("checkpoint_id") == row["model_id"])
        if ckpt.height:
            assert row["train_usd"] == pytest.approx(ckpt["cost_usd"].sum())
        assert row["eval_usd"] == pytest.approx(predictions.filter(pl.col("model_id") == row["model_id"])["cost_usd"].sum())

    per_metric = frame(at, "per_metric")
    assert per_metric.height == metrics.select("model_id", "metric").n_unique()
    labels = expected_labels(lake)
    assert dict(zip(per_metric["model_id"], per_metric["model_label"])) == labels


def test_leaderboard_interval_is_per_answer_and_wider_than_per_score(lake):
    """One answer's five metric scores move together: pooling them as independent samples would claim a
    narrower interval than the answers support; the page's interval is the per-answer one."""
    shown = frame(open_page("leaderboard"), "leaderboard")
    scores = lake.read("eval/scores")
    assert scores.filter(pl.col("eval_set") == ui_lake.STALE_SET).height  # scores its metrics no longer count
    assert scores["score"].null_count()  # judge failures: left out, not averaged in
    for row in shown.iter_rows(named=True):
        _, answers, answer_low, answer_high = per_answer(lake, row["model_id"])
        _, samples, score_low, score_high = per_score(lake, row["model_id"])
        assert samples > answers
        assert row["ci_high"] - row["ci_low"] == pytest.approx(answer_high - answer_low)
        assert row["ci_high"] - row["ci_low"] > 1.5 * (score_high - score_low)


def test_leaderboard_labels_and_reference_rows(lake):
    at = open_page("leaderboard")
    shown = frame(at, "leaderboard")
    labels = expected_labels(lake)
    assert dict(zip(shown["model_id"], shown["model_label"])) == labels
    assert labels[ui_lake.CHECKPOINTS[0]] == "round 0 student"  # its rows predate model_label
    assert labels[ui_lake.EXTERNAL_MODEL_ID] == ui_lake.EXTERNAL_MODEL_ID
    kinds = dict(zip(shown["model_id"], shown["model_kind"]))
    assert kinds[ui_lake.BASE_MODEL_ID] == "base"
    assert kinds[ui_lake.TEACHER_MODEL_ID] == "teacher"
    assert {r["model_id"] for r in shown.iter_rows(named=True) if r["model_kind"] == "checkpoint"} == set(
        ui_lake.CHECKPOINTS.values())
    leader = shown.row(0, named=True)
    if leader["model_label"] != leader["model_id"]:
        assert leader["model_label"] in [c.value for c in at.caption]
    weak_captions = [c.value for c in at.caption if c.value.startswith("gap ")]
    assert weak_captions and all(f"{labels[ui_lake.CHECKPOINTS[1]]} · {ui_lake.CHECKPOINTS[1]}" in c
                                 for c in weak_captions)


def test_leaderboard_lists_weak_cells_of_latest_round(lake):
    at = open_page("leaderboard")
    weak = lake.read("feedback/weaknesses")
    latest = weak.filter((pl.col("round") == weak["round"].max()) & (pl.col("status") == "weak"))
    assert latest.height > 0
    cell_links = [link for link in at.page_link if link.proto.page.strip("/") == "cells"]
    assert len(cell_links) == latest.height
    shown = {tuple(dict(parse_qsl(link.proto.query_string))[k] for k in ("domain", "task_type", "metric"))
             for link in cell_links}
    assert shown == set(latest.select("domain", "task_type", "metric").iter_rows())
    for link, row in zip(cell_links, latest.sort("gap", descending=True).iter_rows(named=True)):
        assert f"{row['score']:.2f} < {row['threshold']:.2f}" in link.value


def test_weak_cell_to_its_pairs_in_two_links(lake):
    """Leaderboard → the weak cell (Cells page) → its pairs (Data inspector): two link clicks."""
    at = open_page("leaderboard")
    weak = lake.read("feedback/weaknesses")
    target = weak.filter((pl.col("round") == weak["round"].max()) & (pl.col("status") == "weak")).sort(
        "gap", descending=True).row(0, named=True)
    first = next(link for link in at.page_link if link.proto.page.strip("/") == "cells")
    follow(at, first)  # click 1
    assert at.selectbox(key="cells_domain").value == target["domain"]
    assert at.selectbox(key="cells_task_type").value == target["task_type"]
    assert at.selectbox(key="cells_metric").value == target["metric"]
    assert at.selectbox(key="cells_model").value == target["model_id"]
    grid = frame(at, "cell_grid")
    weak_cell = grid.filter((pl.col("domain") == target["domain"]) & (pl.col("task_type") == target["task_type"]))
    assert weak_cell["status"][0] == "weak"
    to_pairs = next(link for link in at.page_link if link.proto.page.strip("/") == "inspector")
    follow(at, to_pairs)  # click 2
    pairs = lake.read("distill/pairs").filter(
        (pl.col("domain") == target["domain"]) & (pl.col("task_type") == target["task_type"]))
    shown = frame(at, "pairs")
    assert sorted(shown["request_id"].to_list()) == sorted(pairs["request_id"].to_list())
    scores = shown[f"score_{target['metric']}"].to_list()
    assert scores == sorted(scores, key=lambda s: math.inf if s is None or math.isnan(s) else s)  # lowest first


def test_cells_heatmap_and_history_equal_tables(lake):
    model = ui_lake.CHECKPOINTS[0]
    at = open_page("cells", {"model": model, "metric": "specificity", "domain": "physics",
                             "task_type": "methodology"})
    metrics = lake.read("eval/metrics").filter((pl.col("model_id") == model) & (pl.col("metric") == "specificity"))
    grid = frame(at, "cell_grid")
    assert grid.height == metrics.height == 8
    joined = grid.join(metrics, on=["domain", "task_type"], suffix="_t")
    assert joined.height == 8
    assert joined["mean"].to_list() == pytest.approx(joined["mean_t"].to_list())
    assert joined["n"].to_list() == joined["n_t"].to_list()
    weak = lake.read("feedback/weaknesses").filter(
        (pl.col("model_id") == model) & (pl.col("metric") == "specificity") & (pl.col("status") == "weak"))
    assert set(grid.filter(pl.col("status") == "weak").select("domain", "task_type").iter_rows()) == set(
        weak.select("domain", "task_type").iter_rows())

    cell = metrics.filter((pl.col("domain") == "physics") & (pl.col("task_type") == "methodology")).row(0, named=True)
    assert metric(at, f"{model} score") == f"{cell['mean']:.2f}"
    assert metric(at, "Threshold") == f"{ui_lake.THRESHOLD:.2f}"
    assert metric(at, "Status") == "weak"

    history = frame(at, "cell_history")
    expected = lake.read("feedback/weaknesses").filter(
        (pl.col("domain") == "physics") & (pl.col("task_type") == "methodology") & (pl.col("metric") == "specificity")
    ).sort("round")
    assert history["round"].to_list() == expected["round"].to_list()
    assert history["score"].to_list() == pytest.approx(expected["score"].to_list())
    assert history["threshold"].to_list() == pytest.approx(expected["threshold"].to_list())
    assert len(at.get("vega_lite_chart")) == 2  # heatmap + history


def test_labels_derived_when_the_lake_predates_model_label(lake):
    from nexa_ui import derive

    metrics = lake.read("eval/metrics").drop("model_label")
    predictions = lake.read("eval/predictions").drop("model_label")
    board = derive.leaderboard(metrics, None, None, predictions)
    rounds = dict(zip(*metrics.group_by("model_id").agg(pl.col("round").max()).get_columns()))
    assert dict(zip(board["model_id"], board["model_label"])) == {
        m: f"round {rounds[m]} student" if m in ui_lake.CHECKPOINTS.values() else m for m in rounds}
    assert set(board["ci_from"]) == {"cell bound"}
    assert derive.latest_checkpoint(metrics.with_columns(
        pl.when(pl.col("model_kind") != "checkpoint").then(None).otherwise("model_kind").alias("model_kind"))
    ) == ui_lake.CHECKPOINTS[1]


def test_cells_picker_names_models_and_defaults_to_latest_checkpoint(lake):
    at = open_page("cells")
    picker = at.selectbox(key="cells_model")
    assert picker.value == ui_lake.CHECKPOINTS[1]  # not the teacher, although its rows are newer
    labels = expected_labels(lake)
    shown = {o.rsplit(" · ", 1)[-1]: o for o in picker.options}
    assert set(shown) == set(labels)
    for model_id, option in shown.items():
        assert option == (model_id if labels[model_id] == model_id else f"{labels[model_id]} · {model_id}")
    history = frame(at, "cell_history")
    assert history.height
    assert history["model_label"].to_list() == [labels[m] for m in history["model_id"]]


def test_inspector_filters_equal_pairs_table(lake):
    pairs = lake.read("distill/pairs")
    at = open_page("inspector", {"domain": "physics", "verdict": "rejected"})
    expected = pairs.filter((pl.col("domain") == "physics") & ~pl.col("passed"))
    shown = frame(at, "pairs")
    assert sorted(shown["request_id"].to_list()) == sorted(expected["request_id"].to_list())
    assert metric(at, "Pairs shown") == str(expected.height)
    assert metric(at, "Rejected") == str(expected.height)

    reason = "judge_low_specificity"
    at.selectbox(key="inspector_verdict").select("(any)")
    at.selectbox(key="inspector_domain").select("(any)")
    at.multiselect(key="reasons").select(reason).run()
    with_reason = pairs.filter(pl.col("reject_reasons").list.contains(reason))
    assert sorted(frame(at, "pairs")["request_id"].to_list()) == sorted(with_reason["request_id"].to_list())

    at.multiselect(key="reasons").unselect(reason)
    at.multiselect(key="rounds").select(1).run()
    round1 = pairs.filter(pl.col("round") == 1)
    assert sorted(frame(at, "pairs")["request_id"].to_list()) == sorted(round1["request_id"].to_list())

    completions = lake.read("distill/completions").filter(pl.col("round") == 1)
    assert sorted(frame(at, "completions")["request_id"].to_list()) == sorted(completions["request_id"].to_list())


def test_inspector_one_pair_with_regeneration_chain(lake):
    at = open_page("inspector", {"pair": ui_lake.REGEN_CHILD})
    assert at.selectbox(key="inspector_pair").value == ui_lake.REGEN_CHILD
    pair = lake.read("distill/pairs").filter(pl.col("request_id") == ui_lake.REGEN_CHILD).row(0, named=True)
    prompt = lake.read("raw/prompts").filter(pl.col("prompt_id") == pair["prompt_id"]).row(0, named=True)
    completion = lake.read("distill/completions").filter(pl.col("request_id") == ui_lake.REGEN_CHILD).row(0, named=True)
    texts = [t.value for t in at.text]
    assert prompt["instruction"] in texts
    assert completion["completion"] in texts
    scores, chain = (pl.from_pandas(t.value) for t in at.table)
    assert dict(zip(scores["metric"], scores["score"])) == {m: pair[f"score_{m}"] for m in METRICS}
    assert chain["request_id"].to_list() == [ui_lake.REGEN_PARENT, ui_lake.REGEN_CHILD]
    assert chain["passed"].to_list() == [False, True]


def test_training_equals_checkpoints(lake):
    at = open_page("training")
    checkpoints = lake.read("train/checkpoints").sort("created_at")
    shown = frame(at, "checkpoints")
    assert shown["checkpoint_id"].to_list() == checkpoints["checkpoint_id"].to_list()
    for col in ("backend", "accelerator", "cloud"):
        assert shown[col].to_list() == checkpoints[col].to_list()
    for col in ("tokens_per_s", "cost_usd", "train_loss", "val_loss"):
        assert shown[col].to_list() == pytest.approx(checkpoints[col].to_list())
    latest = checkpoints.row(-1, named=True)
    assert metric(at, "Checkpoints") == str(checkpoints.height)
    assert metric(at, "Latest tokens/s") == f"{latest['tokens_per_s']:,.0f}"
    assert metric(at, "GPU $ (all checkpoints)") == f"${checkpoints['cost_usd'].sum():,.4f}"
    assert len(at.get("vega_lite_chart")) == 2  # loss curves (from metrics.json) + throughput
    assert not at.info  # every checkpoint has its loss curve


def test_costs_equal_completions_and_checkpoints(lake):
    at = open_page("costs")
    completions = lake.read("distill/completions")
    teacher = frame(at, "teacher_costs")
    for row in teacher.iter_rows(named=True):
        rows = completions.filter((pl.col("round") == row["round"]) & (pl.col("teacher_model") == row["teacher_model"]))
        assert row["requests"] == rows.height
        assert row["prompt_tokens"] == rows["prompt_tokens"].sum()
        assert row["completion_tokens"] == rows["completion_tokens"].sum()
        assert row["cost_usd"] == pytest.approx(rows["cost_usd"].sum())
    assert teacher["requests"].sum() == completions.height
    checkpoints = lake.read("train/checkpoints")
    gpu = frame(at, "gpu_costs")
    assert dict(zip(gpu["checkpoint_id"], gpu["cost_usd"])) == pytest.approx(
        dict(zip(checkpoints["checkpoint_id"], checkpoints["cost_usd"])))
    assert metric(at, "Teacher tokens") == f"{completions['prompt_tokens'].sum() + completions['completion_tokens'].sum():,}"
    assert metric(at, "GPU") == f"${checkpoints['cost_usd'].sum():,.4f}"
    judge = frame(at, "judge_costs")  # the fixture's structural judge: verdicts, no request, $0
    assert judge["verdicts"].sum() == lake.read("distill/pairs").height + lake.read("eval/scores").select(
        "model_id", "prompt_id", "round").unique().height
    assert judge["requests"].sum() == 0 and set(judge["cost_usd"]) == {"$0.000000"}
    assert metric(at, "Judge") == "$0"
    predictions = lake.read("eval/predictions")
    evals = frame(at, "eval_costs")
    assert evals["predictions"].sum() == predictions.height
    assert dict(zip(evals["model_id"], evals["model_label"])) == expected_labels(lake)


def _usd(value: float) -> str:
    return f"${value:,.6f}"


def test_costs_show_the_round_ledger_estimated_before_and_measured_after(lake):
    at = open_page("costs")
    rounds = lake.read("feedback/rounds").sort("round")
    shown = frame(at, "round_ledger")
    assert shown["round"].to_list() == rounds["round"].to_list() == [0, 1]
    assert shown["measured"].to_list() == [_usd(v) for v in rounds["total_usd"]]
    # Round 0 had no estimate before it; round 1's is the one round 0 made; round 1 stopped (no next estimate).
    assert shown["estimated"].to_list() == ["—", _usd(rounds["estimated_usd"][1])]
    assert rounds["estimated_usd"][1] == pytest.approx(rounds["next_estimate_usd"][0])
    assert shown["next_estimate"].to_list() == [_usd(rounds["next_estimate_usd"][0]), "—"]
    assert shown["stop_reason"].to_list() == ["—", "round_cap"] and shown["budget"].to_list() == ["none", "none"]
    # The measured $ are the round's rows of the cost tables.
    completions = lake.read("distill/completions").filter(pl.col("round") == 1)
    checkpoints = lake.read("train/checkpoints").filter(pl.col("round") == 1)
    assert shown["teacher"][1] == _usd(completions["cost_usd"].sum())
    assert shown["gpu"][1] == _usd(checkpoints["cost_usd"].sum())
    assert metric(at, "Next round (2)") == "none: round_cap"
    assert metric(at, "Spent in this loop") == _usd(rounds["spent_usd"][1])
    assert metric(at, "Loop budget") == "none"


def test_costs_show_the_next_rounds_estimate_before_it_runs(tmp_path, monkeypatch):
    from nexa_assets.feedback.spend import Cost, Estimate, ledger_row
    from nexa_resources.lake import LakeResource, Lineage

    root = tmp_path / "lake"
    monkeypatch.setenv("NEXA_LAKE_ROOT", str(root))
    ledger = LakeResource(root=str(root))

    def judged(round_: int, estimate: Cost) -> None:
        row = ledger_row(loop_id="loop-b", loop_round=round_, checkpoint_id=f"c{round_}", cost=Cost(0.5, 0.25, 0.5, 0.0),
                         estimated=None, spent_usd=1.25 * (round_ + 1), budget_usd=5.0, focus_lift=None,
                         gain_per_usd=None, min_gain_per_usd=None, next_round=Estimate(estimate, 24, "basis"),
                         stop_reason=None, stop_detail=None)
        ledger.write("feedback/rounds", row, mode="merge", lineage=Lineage(run_id=f"r{round_}", round=round_))

    judged(0, Cost(0.12, 0.05, 0.25, 0.0))
    at = open_page("costs")
    assert metric(at, "Next round (1), estimated") == "$0.420000"
    assert metric(at, "Spent in this loop") == "$1.250000" and metric(at, "Loop budget") == "$5.000000"
    assert frame(at, "round_ledger")["next_estimate"].to_list() == ["$0.420000"]
    assert at.info and "nothing has been bought yet" in at.info[0].value  # the other sections' empty state

    judged(1, Cost(0.12, None, 0.25, 0.0))  # a judge without a price: unknown, never $0
    import streamlit as st

    st.cache_data.clear()  # the page trusts a table's version for a few seconds (nexa_ui.data.VERSION_TTL_S)
    at = open_page("costs")
    assert metric(at, "Next round (2), estimated") == "unknown"


def test_sql_runs_read_only_queries_and_refuses_files(lake):
    at = open_page("sql")
    default = frame(at, "sql_table")
    pairs = lake.read("distill/pairs")
    assert default["pairs"].sum() == pairs.height
    assert at.get("download_button")

    at.text_area(key="sql_query").input("SELECT count(*) AS n FROM distill.pairs WHERE passed")
    at.button(key="sql_run").click().run()
    assert frame(at, "sql_table")["n"].to_list() == [pairs["passed"].sum()]

    at.text_area(key="sql_query").input("SELECT * FROM read_csv('/etc/passwd')")
    at.button(key="sql_run").click().run()
    assert not at.exception
    assert [e.value for e in at.error] and "external file access is disabled" in at.error[0].value
    assert at.error[0].value.startswith("Refused")
    assert not at.dataframe

    at.text_area(key="sql_query").input("SELEC nonsense")
    at.button(key="sql_run").click().run()
    assert at.error[0].value.startswith("Query failed")


def test_sql_page_stops_a_runaway_query_and_keeps_serving(lake, monkeypatch):
    monkeypatch.setenv("NEXA_SQL_TIMEOUT_S", "1")
    at = open_page("sql")
    assert "may run 1 s and use 1GB of memory" in at.caption[0].value
    at.text_area(key="sql_query").input("SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b")
    at.button(key="sql_run").click().run()
    assert not at.exception
    assert at.error[0].value.startswith("Stopped: query stopped after 1 s")
    at.text_area(key="sql_query").input("COPY (SELECT 'x' AS a) TO '.tmp/w.csv'")
    at.button(key="sql_run").click().run()
    assert at.error[0].value.startswith("Refused") and not Path(".tmp/w.csv").exists()
    at.text_area(key="sql_query").input("SELECT count(*) AS n FROM distill.pairs")
    at.button(key="sql_run").click().run()
    assert frame(at, "sql_table")["n"].to_list() == [lake.read("distill/pairs").height]


@pytest.mark.parametrize("page", list(PAGES))
def test_empty_lake_names_the_command(page, tmp_path, monkeypatch):
    monkeypatch.setenv("NEXA_LAKE_ROOT", str(tmp_path / "empty"))
    at = open_page(page)
    assert not at.error
    assert at.info and "make demo" in at.info[0].value
    assert "nexa materialize --select" in at.info[0].value


@pytest.fixture(scope="module")
def partial_root(ui_lake_root, tmp_path_factory) -> str:
    """Eval metrics and pairs, but no feedback yet, no completions or prompts, checkpoints without metrics.json."""
    from nexa_resources.lake import LakeResource, Lineage

    full = LakeResource(root=ui_lake_root)
    root = str(tmp_path_factory.mktemp("ui-partial") / "lake")
    part = LakeResource(root=root)
    for table in ("eval/metrics", "distill/pairs", "train/checkpoints"):
        rows = full.read(table).drop("run_id", "round", "created_at")
        if table == "train/checkpoints":
            rows = rows.with_columns(pl.format("{}/train/artifacts/{}", pl.lit(root), "checkpoint_id").alias("uri"))
        part.write(table, rows, mode="overwrite", lineage=Lineage(run_id="partial", round=0))
    return root


@pytest.mark.parametrize("page", list(PAGES))
def test_partial_lake_pages_render(page, partial_root, ui_lake_root, monkeypatch):
    monkeypatch.setenv("NEXA_LAKE_ROOT", partial_root)
    at = open_page(page)
    assert not at.error
    if page == "leaderboard":
        assert any("No feedback round has run yet" in i.value for i in at.info)
        assert not at.page_link
        assert any("No `eval.scores` rows" in i.value for i in at.info)
        from nexa_resources.lake import LakeResource

        full = LakeResource(root=ui_lake_root)
        for row in frame(at, "leaderboard").iter_rows(named=True):  # without scores: the cell bound
            _, answers, low, high = per_answer(full, row["model_id"])
            assert row["ci_from"] == "cell bound"
            assert row["n"] == answers
            assert row["ci_high"] - row["ci_low"] >= high - low
    if page == "cells":  # no thresholds yet: each checkpoint's mean by round
        assert frame(at, "cell_history").height >= 1
    if page == "inspector":
        assert "(prompt not in raw.prompts)" in [c.value for c in at.caption]
    if page == "training":
        assert any("loss curve" in i.value for i in at.info)
