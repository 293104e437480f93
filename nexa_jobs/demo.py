"""`make demo`: run the pipeline on the embedded defaults (local lake, local teacher) and print a summary."""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl

from nexa_resources.lake import LakeResource

# Sized to finish in under 15 minutes on a 2-core laptop, by run config only (never by env: the teacher's
# settings are part of every request id, so `make up`'s daemon must build the same teacher as the demo).
# Every gate and judge threshold is the default one; what is smaller than the defaults is listed here and
# printed with the summary. bench/efficacy.py runs the full defaults.
DEMO_RUN_CONFIG = {
    "ops": {
        "distill__completions": {"config": {"per_cell": 1}},
        "eval__prompts": {"config": {"per_cell": 4}},
        "eval__predictions": {"config": {"include_teacher": False}},
        "feedback_loop": {"config": {"prompts_per_round": 8, "max_rounds": 1}},
    }
}
DEMO_RELAXED = [
    "teacher answers 1 seed prompt per cell in round 0 (default 2), each best of 4",
    "4 held-out eval prompts per cell (default 12): intervals are about 1.7x wider than the bench's",
    "the teacher's reference row on the eval prompts is skipped (bench/efficacy.py --teacher-row adds it)",
    "8 prompts bought for the focus cells (default 40); one feedback round (default cap 3)",
]
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

    from nexa_jobs.materialize import materialize
    from nexa_jobs.execution import execute
    from nexa_jobs.feedback_sensor import feedback_sensor
    from nexa_resources.run_worker import worker_tags

    rounds: list[dict[str, object]] = []
    started = time.monotonic()
    config = DEMO_RUN_CONFIG if run_config is None else run_config
    result = materialize("*", config, tags={DRIVER_TAG: "demo", "nexa/round": "0"})
    rounds.append({"round": 0, "run_id": result.run_id, "success": result.success, "wall_s": time.monotonic() - started})
    if not result.success:
        return rounds
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
            run = execute(  # with the executor NEXA_EXECUTOR names, as the daemon's run would
                "refresh_job",
                run_config={**request.run_config, "loggers": {"console": {"config": {"log_level": "INFO"}}}},
                tags={**request.tags, "dagster/run_key": request.run_key, DRIVER_TAG: "demo", **worker_tags()},
                instance=instance,
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
        "Cell scores per round (mean judge score 1–5 of the round's checkpoint; * = weak: mean below the threshold, "
        "** = clearly weak: the whole 95% interval below it; (±) = paired change against the previous round with its "
        "95% half-width):",
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


def efficacy_text(lake: LakeResource) -> str:
    """Did round 1 lift the cells it focused on? Paired by prompt, with 95% intervals, and a few answers."""
    from nexa_jobs.efficacy import measure, side_by_side

    try:
        report = measure(lake)
    except ValueError as exc:
        return f"Efficacy: not measured ({exc})"
    lines = ["Efficacy (paired by prompt; each answer's metric scores averaged first; 95% t-intervals):"]
    for name, model_id in report.models.items():
        lines.append(f"  {name:8s} {report.labels.get(model_id, model_id)}")
    lines += [
        "  focus cells: " + ", ".join("/".join(c) for c in report.focus),
        _table(report.table),
        f"  focus cells, round 1 - round 0: {report.focused_lift} over {report.focused_lift.n} prompts"
        + ("  (a lift: the interval lies above 0)" if report.focused_lift.significant
           else "  (the interval reaches 0: not distinguishable from noise at this size)"),
        f"  other cells, round 1 - round 0: {report.other_change} over {report.other_change.n} prompts",
        f"  all cells,   round 0 - base:    {report.base_to_round0} over {report.base_to_round0.n} prompts",
    ]
    drop = report.largest_other_drop
    if drop:
        lines.append(f"  largest other-cell drop: {drop['domain']}/{drop['task_type']}/{drop['metric']} "
                     f"{drop['change']:+.2f} [{drop['ci_low']:+.2f}, {drop['ci_high']:+.2f}] (n={drop['n']})")
    for example in side_by_side(lake, report):
        lines += ["", f"[{example['cell']}] {example['instruction']}"]
        for name in ("base", "round 1"):
            lines += [f"  --- {name} ---", *("    " + line for line in example[name].splitlines() if line.strip())]
    return "\n".join(lines)


def main() -> int:
    from nexa_jobs.instance import open_instance

    instance = open_instance()
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
    print()
    print(efficacy_text(lake))
    print("\nSmaller than the defaults in this demo (every filter and judge threshold is the default):")
    for line in DEMO_RELAXED:
        print(f"  - {line}")
    return 0
