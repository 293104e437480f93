"""Jobs: each a selection of the asset graph. The refresh job is what the sensors launch."""

from __future__ import annotations

import dagster as dg

LOOP_GROUPS: tuple[str, ...] = ("raw", "distill", "sft", "train", "evaluate", "feedback")

raw_job = dg.define_asset_job(
    "raw_job", selection=dg.AssetSelection.groups("raw"), description="Ingest and validate every prompt source."
)
distill_job = dg.define_asset_job(
    "distill_job",
    selection=dg.AssetSelection.groups("raw", "distill", "sft"),
    description="raw → teacher completions → filtered, judged pairs → SFT examples.",
)
train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.groups("train"),
    description="Train the student on the current sft/examples version (local or SkyPilot compute).",
)
refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.groups(*LOOP_GROUPS),
    description="One round of the loop: raw → distill → sft → train → evaluate → feedback. The feedback "
    "sensor launches it for each round, the arrival sensor for each batch of new input files.",
)

JOBS = [raw_job, distill_job, train_job, refresh_job]
