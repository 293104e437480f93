"""The feedback sensor: a new feedback/weaknesses materialization with weak cells launches the next round.

It writes nothing itself. For each new materialization (cursor: the event's storage id) whose round did
not stop, it requests one run of `refresh_job` with run key `feedback-round-<r+1>`, so each round is
launched once. The run inherits the run config of the run that judged round r (the user's settings:
prompt counts, thresholds, training steps …), with `round` set to r+1 on every op; its tags carry the
round, the focus cells, the loop, the run it came from, and the round's estimated $ (made by the feedback
step before the run starts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg

from nexa_assets.rounds import ESTIMATE_TAG, FOCUS_TAG, ROUND_TAG, TRIGGER_TAG
from nexa_jobs.catalog import OP_NAMES, ops_taking
from nexa_resources.run_worker import fail_dead_runs
from nexa_resources.tables import asset_key

WEAKNESSES = asset_key("feedback/weaknesses")
REFRESH_JOB = "refresh_job"
# Run config that belongs to one run only and must not be inherited by the next round.
_NOT_INHERITED: Mapping[str, tuple[str, ...]] = {"raw_prompts": ("files",), "eval__predictions": ("checkpoint_id",)}
_BATCH = 100


def run_key(round_: int) -> str:
    return f"feedback-round-{round_}"


def inherited_config(base: Mapping[str, Any] | None) -> dict[str, Any]:
    """The op config a later refresh run takes over from `base` (a run's config): known ops only,
    without what belongs to that one run (its input files, a pinned checkpoint, its round)."""
    ops: dict[str, Any] = {}
    for op, entry in ((base or {}).get("ops") or {}).items():
        if op not in OP_NAMES or not isinstance(entry, Mapping):
            continue
        config = dict(entry.get("config") or {})
        for field in (*_NOT_INHERITED.get(op, ()), "round"):
            config.pop(field, None)
        ops[op] = {"config": config}
    return {"ops": ops}


def next_round_config(base: Mapping[str, Any] | None, next_round: int) -> dict[str, Any]:
    """The refresh run's config: the judging run's op config (known ops only), round set to `next_round`."""
    config = inherited_config(base)
    for op in ops_taking("round"):
        config["ops"].setdefault(op, {"config": {}})["config"]["round"] = next_round
    return config


def latest_loop_config(instance: dg.DagsterInstance) -> dict[str, Any]:
    """The settings of the loop as last run: the inherited op config of the run that wrote the newest
    feedback/weaknesses (empty before the first evaluation)."""
    records = instance.fetch_materializations(WEAKNESSES, limit=1).records
    run = instance.get_run_by_id(records[0].run_id) if records and records[0].run_id else None
    return inherited_config(run.run_config if run else None)


def _value(metadata: Mapping[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def _request(context: dg.SensorEvaluationContext, record: Any) -> tuple[int, dg.RunRequest | None, str]:
    """(round, run request or None, what was decided) for one feedback/weaknesses materialization."""
    metadata = record.asset_materialization.metadata
    round_ = int(_value(metadata, "round"))
    stop = _value(metadata, "stop_reason") or None
    focus = _value(metadata, "focus_cells") or []
    if isinstance(focus, str):
        focus = json.loads(focus)
    if stop:
        return round_, None, f"round {round_}: the loop stopped ({stop})"
    if not focus:
        return round_, None, f"round {round_}: no weak cells"
    origin = context.instance.get_run_by_id(record.run_id) if record.run_id else None
    next_round = round_ + 1
    request = dg.RunRequest(
        run_key=run_key(next_round),
        job_name=REFRESH_JOB,
        run_config=next_round_config(origin.run_config if origin else None, next_round),
        tags={
            ROUND_TAG: str(next_round),
            FOCUS_TAG: ",".join(focus),
            TRIGGER_TAG: "feedback",
            "nexa/loop_id": str(_value(metadata, "loop_id") or ""),
            "nexa/judged_by_run": record.run_id or "",
            # A judgement from before estimates were made has none: unknown, never a made-up $0.
            ESTIMATE_TAG: str(_value(metadata, ESTIMATE_TAG) or "unknown"),
        },
    )
    return round_, request, f"round {round_}: {len(focus)} weak cells → {run_key(next_round)} ({', '.join(focus)})"


@dg.sensor(
    name="feedback_sensor",
    job_name=REFRESH_JOB,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches feedback/weaknesses; when a round has weak cells and no stop reason, launches "
    "refresh_job for the next round (run key feedback-round-<r>, tags nexa/round, nexa/focus_cells and "
    "nexa/estimated_cost_usd).",
)
def feedback_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    # A killed round would hold the nexa/trigger queue slot forever and stall the loop.
    for run_id in fail_dead_runs(context.instance, by="feedback_sensor"):
        context.log.warning(f"run {run_id} was left STARTED by a worker that is gone (killed): marked failed")
    if context.cursor:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=WEAKNESSES, after_storage_id=int(context.cursor)),
            limit=_BATCH,
            ascending=True,
        ).records
    else:
        # Switched on for the first time: only the newest judgement counts, history is not replayed.
        records = context.instance.fetch_materializations(WEAKNESSES, limit=1).records
    if not records:
        return dg.SkipReason("no new feedback/weaknesses materialization")
    # Several judgements of one round since the last tick: the newest decides.
    decisions: dict[int, tuple[dg.RunRequest | None, str]] = {}
    for record in records:
        round_, request, said = _request(context, record)
        decisions[round_] = (request, said)
    for _, said in decisions.values():
        context.log.info(said)
    requests = [request for request, _ in decisions.values() if request is not None]
    cursor = str(records[-1].storage_id)
    if not requests:
        return dg.SensorResult(skip_reason="; ".join(said for _, said in decisions.values()), cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)
