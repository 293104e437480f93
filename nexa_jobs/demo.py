"""`make demo`: run the pipeline on the embedded defaults (local lake, local teacher) and print a summary."""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl

from nexa_resources.lake import LakeResource

# Sized for a 2-core laptop by run config only (prompt counts, answer lengths), never by env: the teacher's
# settings are part of every request id, so `make up`'s daemon must build the same teacher as the demo.
# SmolLM2-135M is a stand-in that lets the whole loop run offline; it cannot write the structured
# answers the default gate demands (measured: 0 of 16 pass), so the demo waives the structure and
# length checks and the judge thresholds, keeping refusal, citation, emptiness and duplicate checks.
# With a real teacher (NEXA_TEACHER_BASE_URL), run with the defaults.
DEMO_WAIVED = [
    "truncated", "too_short", "too_few_tokens", "missing_hypotheses", "hypothesis_without_outcome",
    "too_few_steps", "missing_control", "missing_readout",
]
METRICS = ("correctness", "methodology", "specificity", "clarity", "hallucination_safety")
DEMO_RUN_CONFIG = {
    "ops": {
        "distill__completions": {"config": {"per_cell": 2}},
        "distill__pairs": {
            "config": {"regenerate": 0, "waive_reasons": DEMO_WAIVED, "thresholds": {m: 1 for m in METRICS}}
        },
        "eval__prompts": {"config": {"per_cell": 2}},
        "eval__predictions": {"config": {"max_tokens": 128}},
        "feedback_loop": {"config": {"prompts_per_round": 8, "max_rounds": 3}},
    }
}
DRIVER_TAG = "nexa/driver"


def _table(df: pl.DataFrame) -> str:
    with pl.Config(
        tbl_rows=100,
        tbl_cols=-1,
        tbl_width_chars=240,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        fmt_str_lengths=60,
    ):
        return str(df)


def summary(lake: LakeResource) -> str:
    """A printable summary of the lake: tables, prompt cells, teacher spend, pass/reject reasons, SFT rows."""
    lines = [f"Lake at {lake.root_uri()}", ""]
    rows = []
    for spec in lake.tables():
        dt = lake.delta_table(spec.path)
        rows.append({"table": spec.sql_name, "delta_version": dt.version(), "rows": dt.count()})
    lines.append(_table(pl.DataFrame(rows)))
    con = lake.connect()
    queries = {
        "raw/prompts": (
            "raw.prompts by cell",
            "SELECT domain, task_type, count(*) FILTER (split = 'train') AS train, "
            "count(*) FILTER (split = 'eval') AS eval FROM raw.prompts GROUP BY ALL ORDER BY ALL",
        ),
        "raw/rejects": (
            "raw.rejects by reason",
            "SELECT reason_code, count(*) AS n FROM raw.rejects GROUP BY ALL ORDER BY n DESC",
        ),
        "distill/completions": (
            "distill.completions (teacher spend)",
            "SELECT teacher_model, count(*) AS requests, count(error) AS errors, sum(prompt_tokens) AS prompt_tokens, "
            "sum(completion_tokens) AS completion_tokens, round(avg(latency_ms)) AS avg_latency_ms, "
            "round(sum(cost_usd), 4) AS cost_usd FROM distill.completions GROUP BY ALL",
        ),
        "distill/pairs": (
            "distill.pairs: passed, and reject reasons",
            "SELECT coalesce(reason, 'passed') AS outcome, count(*) AS n FROM "
            "(SELECT unnest(CASE WHEN passed THEN [NULL] ELSE reject_reasons END) AS reason FROM distill.pairs) "
            "GROUP BY ALL ORDER BY n DESC",
        ),
        "sft/examples": (
            "sft.examples by split",
            "SELECT split, count(*) AS examples, round(avg(length(completion))) AS avg_chars "
            "FROM sft.examples GROUP BY ALL ORDER BY split",
        ),
    }
    for table, (title, query) in queries.items():
        if lake.exists(table):
            result = con.sql(query).pl()
            if result.height:
                lines += ["", f"{title}:", _table(result)]
    return "\n".join(lines)


def _daemon_running(instance: object) -> bool:
    """Whether a Dagster daemon (`make up`) heartbeats on this instance: it would drive the loop too."""
    try:
        beats = instance.get_daemon_heartbeats()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - an instance without daemon storage has no daemon
        return False
    now = time.time()
    return any(now - beat.timestamp < 60 for beat in beats.values())


def run_loop(
    instance: object, log: Callable[[str], None] = print, run_config: dict | None = None
) -> list[dict[str, object]]:
    """Round 0 on the demo config, then every round the feedback sensor asks for, until it stops.

    The sensor is the real one (`feedback_sensor`), evaluated here in-process with its cursor, and each
    run it requests is executed as the daemon would launch it: refresh_job with its run config and tags.
    """
    import dagster as dg

    from nexa_jobs.cli import materialize
    from nexa_jobs.definitions import defs
    from nexa_jobs.feedback_sensor import feedback_sensor

    rounds: list[dict[str, object]] = []
    started = time.monotonic()
    config = DEMO_RUN_CONFIG if run_config is None else run_config
    result = materialize("*", config, tags={DRIVER_TAG: "demo", "nexa/round": "0"})
    rounds.append({"round": 0, "run_id": result.run_id, "success": result.success, "wall_s": time.monotonic() - started})
    if not result.success:
        return rounds
    job = defs.resolve_job_def("refresh_job")
    cursor = None
    while True:
        evaluation = feedback_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
        if isinstance(evaluation, dg.SkipReason):
            log(f"feedback sensor: {evaluation.skip_message}")
            break
        cursor = evaluation.cursor or cursor
        if not evaluation.run_requests:
            log(f"feedback sensor: {evaluation.skip_reason.skip_message if evaluation.skip_reason else 'no run'}")
            break
        for request in evaluation.run_requests:
            log(f"feedback sensor → {request.run_key}: focus {request.tags.get('nexa/focus_cells')}")
            started = time.monotonic()
            run = job.execute_in_process(
                run_config={**request.run_config, "loggers": {"console": {"config": {"log_level": "INFO"}}}},
                tags={**request.tags, "dagster/run_key": request.run_key, DRIVER_TAG: "demo"},
                instance=instance,
                raise_on_error=False,
            )
            rounds.append(
                {
                    "round": int(request.tags["nexa/round"]),
                    "run_id": run.run_id,
                    "success": run.success,
                    "wall_s": time.monotonic() - started,
                }
            )
            if not run.success:
                return rounds
    return rounds


def loop_report(lake: LakeResource, rounds: list[dict[str, object]]) -> str:
    from nexa_jobs.loop_report import cell_scores_by_round, rounds_summary

    summary_rows = rounds_summary(lake)
    walls = pl.DataFrame(
        [{"round": r["round"], "wall_s": round(float(r["wall_s"]), 1)} for r in rounds],
        schema={"round": pl.Int64, "wall_s": pl.Float64},
    )
    if summary_rows.height:
        summary_rows = summary_rows.join(walls, on="round", how="left")
    stop = summary_rows["stop_reason"][-1] if summary_rows.height else "—"
    lines = [
        "Cell scores per round (mean judge score 1–5 of the round's checkpoint; * = weak):",
        _table(cell_scores_by_round(lake)),
        "",
        "Rounds:",
        _table(summary_rows),
        "",
        f"Stop reason: {stop}",
        "",
        "Where to look next:",
        "  make up                                   # Dagster UI + daemon (sensors on) and the Streamlit dashboard",
        '  .venv/bin/nexa sql "SELECT * FROM eval.metrics ORDER BY mean LIMIT 10"',
        '  .venv/bin/nexa sql "SELECT round, domain, task_type, metric, score, status, stop_reason FROM feedback.weaknesses"',
        '  .venv/bin/nexa sql "SELECT * FROM feedback.requests"',
    ]
    return "\n".join(lines)


def main() -> int:
    from nexa_jobs.cli import _instance

    instance = _instance()
    if _daemon_running(instance):
        print(
            "A Dagster daemon is running on this DAGSTER_HOME (make up): its feedback sensor would drive the "
            "loop alongside the demo. Stop it first (make down, or Ctrl-C), then run make demo again."
        )
        return 2
    started = time.monotonic()
    rounds = run_loop(instance)
    failed = [r for r in rounds if not r["success"]]
    if failed:
        print(f"demo run {failed[0]['run_id']} (round {failed[0]['round']}) failed; see the log above")
        return 1
    lake = LakeResource.from_env()
    print(f"\nDemo finished in {time.monotonic() - started:.1f}s: {len(rounds)} rounds\n")
    print(summary(lake))
    print()
    print(loop_report(lake, rounds))
    return 0
