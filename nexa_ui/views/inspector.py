"""Data inspector: teacher completions and judged pairs, filtered by cell, verdict and round; one pair in full."""

from __future__ import annotations

import polars as pl
import streamlit as st

from nexa_ui import common, data, derive

st.title("Data inspector")

tables = common.require("distill/pairs", what="the teacher has not answered any prompt")
if tables is not None:
    pairs = tables["distill/pairs"]
    completions = data.read("distill/completions")
    prompts = data.read("raw/prompts")

    with st.container(border=True):
        c1, c2, c3, c4 = st.columns(4)
        domains = [common.ANY, *[d for d in derive.DOMAINS if d in set(pairs["domain"].to_list())]]
        task_types = [common.ANY, *[t for t in derive.TASK_TYPES if t in set(pairs["task_type"].to_list())]]
        domain = common.url_select("Domain", domains, "domain", page="inspector", container=c1)
        task_type = common.url_select("Task type", task_types, "task_type", page="inspector", container=c2)
        verdict = common.url_select("Verdict", [common.ANY, "passed", "rejected"], "verdict", page="inspector", container=c3)
        sort_by = common.url_select("Sort by (lowest first)", [common.ANY, *derive.METRICS], "metric", page="inspector", container=c4)
        c5, c6 = st.columns([3, 1])
        reasons = c5.multiselect("Reject reason (any of)", derive.reject_reasons(pairs), key="reasons")
        rounds = c6.multiselect("Round", sorted(pairs["round"].unique().to_list()), key="rounds")

    filtered = derive.filter_pairs(
        pairs,
        domain=None if domain == common.ANY else domain,
        task_type=None if task_type == common.ANY else task_type,
        passed=None if verdict == common.ANY else verdict == "passed",
        reasons=reasons,
        rounds=rounds,
    )
    if sort_by != common.ANY:
        filtered = filtered.sort(f"score_{sort_by}", nulls_last=True)

    tab_pairs, tab_completions = st.tabs(["Pairs", "Completions"])
    with tab_pairs:
        m1, m2, m3 = st.columns(3)
        m1.metric("Pairs shown", filtered.height)
        m2.metric("Passed", int(filtered["passed"].sum()))
        m3.metric("Rejected", filtered.height - int(filtered["passed"].sum()))
        shown_cols = ["request_id", "round", "domain", "task_type", "passed", "reject_reasons",
                      *[f"score_{m}" for m in derive.METRICS], "judge_mean", "regenerated_from", "prompt_id"]
        common.show_table(filtered.select([c for c in shown_cols if c in filtered.columns]), key="pairs",
                     column_config={"judge_mean": common.SCORE})

        st.subheader("One pair")
        if filtered.is_empty():
            st.info("No pair matches these filters.")
        else:
            ids = filtered["request_id"].to_list()
            request_id = common.url_select("Pair (request_id)", ids, "pair", page="inspector", container=st)
            pair = filtered.filter(pl.col("request_id") == request_id).row(0, named=True)
            prompt = prompts.filter(pl.col("prompt_id") == pair["prompt_id"]) if not prompts.is_empty() else prompts
            completion = (
                completions.filter(pl.col("request_id") == request_id) if not completions.is_empty() else completions
            )
            left, right = st.columns(2)
            with left:
                st.markdown(f"**Prompt** `{pair['prompt_id']}` · {pair['domain']} · {pair['task_type']}")
                if prompt.height:
                    st.text(prompt["instruction"][0])
                    if prompt["context"][0]:
                        st.caption("Context")
                        st.text(prompt["context"][0])
                else:
                    st.caption("(prompt not in raw.prompts)")
            with right:
                st.markdown(
                    f"**Completion** · {'passed' if pair['passed'] else 'rejected: ' + ', '.join(pair['reject_reasons'])}"
                )
                if completion.height:
                    row = completion.row(0, named=True)
                    st.text(row["completion"] or "")
                    st.caption(f"{row['teacher_model']} · template {row['template_version']} · "
                               f"finish {row['finish_reason']} · {row['completion_tokens']} tokens · "
                               f"{common.fmt_usd(row['cost_usd'])}")
                else:
                    st.caption("(completion not in distill.completions)")
            scores = pl.DataFrame(
                {"metric": list(derive.METRICS), "score": [pair.get(f"score_{m}") for m in derive.METRICS]},
                schema={"metric": pl.String, "score": pl.Int64},
            )
            st.markdown(f"**Judge** {pair.get('judge_model') or '(not judged)'} · rubric {pair.get('rubric_version')}")
            st.table(scores)
            if pair.get("lacking"):
                st.caption(f"Lacking: {pair['lacking']}")
            if pair.get("judge_error"):
                st.warning(f"Judge error: {pair['judge_error']}")
            chain = derive.regeneration_chain(completions, request_id)
            st.markdown("**Regeneration chain** (oldest first)")
            verdicts = dict(zip(pairs["request_id"].to_list(), pairs["passed"].to_list()))
            reasons_of = dict(zip(pairs["request_id"].to_list(), pairs["reject_reasons"].to_list()))
            chain_rows = pl.DataFrame(
                {
                    "request_id": chain,
                    "this pair": [rid == request_id for rid in chain],
                    "passed": [verdicts.get(rid) for rid in chain],
                    "reject_reasons": [", ".join(reasons_of.get(rid) or []) for rid in chain],
                },
                schema={"request_id": pl.String, "this pair": pl.Boolean, "passed": pl.Boolean,
                        "reject_reasons": pl.String},
            )
            st.table(chain_rows)

    with tab_completions:
        if completions.is_empty():
            common.empty_state(["distill/completions"], "the teacher has not answered any prompt")
        else:
            cells = derive.completions_with_cells(completions, prompts)
            if domain != common.ANY:
                cells = cells.filter(pl.col("domain") == domain)
            if task_type != common.ANY:
                cells = cells.filter(pl.col("task_type") == task_type)
            if rounds:
                cells = cells.filter(pl.col("round").is_in(rounds))
            st.metric("Completions shown", cells.height)
            common.show_table(
                cells.select("request_id", "round", "domain", "task_type", "teacher_model", "finish_reason",
                             "prompt_tokens", "completion_tokens", "latency_ms", "cost_usd", "attempts", "error",
                             "regenerated_from", "completion"),
                key="completions", column_config={"cost_usd": common.USD},
            )
