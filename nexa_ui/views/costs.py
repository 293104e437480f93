"""Costs: the loop's per-round ledger ($ estimated before, measured after, the next round's estimate), teacher and
judge tokens and $ by round and model, evaluation answers, GPU $ by checkpoint."""

from __future__ import annotations

from typing import Any

import streamlit as st

from nexa_ui import charts, common, data, derive

st.title("Costs")

completions = data.read("distill/completions")
checkpoints = data.read("train/checkpoints")
predictions = data.read("eval/predictions")
judge = derive.judge_costs(data.read("distill/pairs"), data.read("eval/scores"))
rounds = data.read("feedback/rounds")

outlook: dict[str, Any] | None = derive.next_round(rounds)
if outlook is not None:
    st.subheader("Feedback rounds: $ estimated before, measured after")
    cols = list(st.columns(3))
    if outlook["stop_reason"] is None:
        cols[0].metric(f"Next round ({outlook['round']}), estimated", outlook["estimate"])
    else:
        cols[0].metric(f"Next round ({outlook['round']})", f"none: {outlook['stop_reason']}")
    cols[1].metric("Spent in this loop", outlook["spent"])
    cols[2].metric("Loop budget", outlook["budget"])
    if outlook["stop_detail"]:
        st.caption(f"Stopped: {outlook['stop_detail']}")
    common.show_table(derive.round_ledger(rounds), key="round_ledger")
    st.caption("One row per round (`feedback.rounds`): `estimated` was made by the previous round's feedback step "
               "before this round ran, `measured` sums this round's rows of the cost columns (teacher, judge, GPU, "
               "priced reference answers); `next_estimate` is the next round's, in its run's `nexa/estimated_cost_usd` "
               "tag. \"unknown\": a model without a known price, never $0; \"—\": no figure was made.")

if completions.is_empty() and checkpoints.is_empty() and judge.is_empty():
    common.empty_state(["distill/completions", "train/checkpoints"], "nothing has been bought yet")
else:
    teacher = derive.teacher_costs(completions)
    gpu = derive.gpu_costs(checkpoints)
    evals = derive.with_labels(derive.eval_costs(predictions),
                               derive.model_labels(data.read("eval/metrics"), predictions))
    teacher_usd = float(teacher["cost_usd"].sum()) if not teacher.is_empty() else 0.0
    gpu_usd = float(gpu["cost_usd"].sum()) if not gpu.is_empty() else 0.0
    eval_usd = float(evals["cost_usd"].sum()) if not evals.is_empty() else 0.0
    judge_usd = derive.judge_total(judge)
    known = teacher_usd + gpu_usd + eval_usd + (judge_usd or 0.0)
    cols = list(st.columns(6))
    cols[0].metric("Total", common.fmt_usd(known) + (" + unknown" if judge_usd is None else ""))
    cols[1].metric("Teacher", common.fmt_usd(teacher_usd))
    cols[2].metric("Judge", derive.UNKNOWN_USD if judge_usd is None else common.fmt_usd(judge_usd))
    cols[3].metric("GPU", common.fmt_usd(gpu_usd))
    tokens = (int(teacher["prompt_tokens"].sum() + teacher["completion_tokens"].sum())
              if not teacher.is_empty() else 0)
    cols[4].metric("Teacher tokens", common.fmt_int(tokens))
    judge_tokens = int(judge["prompt_tokens"].sum() + judge["completion_tokens"].sum()) if not judge.is_empty() else 0
    cols[5].metric("Judge tokens", common.fmt_int(judge_tokens))

    st.subheader("Teacher: tokens and $ by round and model")
    if teacher.is_empty():
        common.empty_state(["distill/completions"], "the teacher has not answered any prompt")
    else:
        common.show_table(teacher, key="teacher_costs", column_config={"cost_usd": common.USD})
        left, right = st.columns(2)
        left.altair_chart(charts.bars(teacher.with_columns(teacher["round"].cast(str)), "round",
                                      "completion_tokens", color="teacher_model", title="completion tokens"))
        right.altair_chart(charts.bars(teacher.with_columns(teacher["round"].cast(str)), "round", "cost_usd",
                                       color="teacher_model", title="teacher $"))

    st.subheader("Judge: requests, tokens and $ by round, model and table")
    if judge.is_empty():
        common.empty_state(["distill/pairs", "eval/scores"], "nothing has been judged")
    else:
        common.show_table(derive.usd_text(judge), key="judge_costs")
        st.caption("requests: verdicts paid for (a verdict from the judge's request cache costs nothing again); "
                   "the structural judge costs $0; a model without a known price shows \"unknown\" (set its price "
                   "in the judge's `prices`).")

    st.subheader("GPU $ by checkpoint")
    if gpu.is_empty():
        common.empty_state(["train/checkpoints"], "no student has been trained")
    else:
        common.show_table(gpu, key="gpu_costs",
                     column_config={"cost_usd": common.USD, "price_per_hour": common.USD})
        st.altair_chart(charts.bars(gpu, "checkpoint_id", "cost_usd", title="GPU $"))

    if not evals.is_empty():
        st.subheader("Evaluation answers by round and model")
        common.show_table(evals, key="eval_costs", column_config={"cost_usd": common.USD})
    st.caption("Local runs cost $0: the embedded teacher and CPU training are free; SkyPilot runs record "
               "the catalog $/hour × job duration, OpenAI-compatible teachers and judges their token prices.")
