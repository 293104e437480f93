"""The one Definitions object: every asset, check, resource, job and sensor of Nexa."""

from __future__ import annotations

import dagster as dg

from nexa_assets.raw.assets import raw_prompts
from nexa_resources.inputs import InputsResource
from nexa_resources.lake import LakeResource

ASSETS = [raw_prompts]


def build_resources() -> dict[str, object]:
    """Resources for the current environment (NEXA_LAKE_ROOT, NEXA_INPUT_URI, AWS_* for S3)."""
    return {"lake": LakeResource.from_env(), "inputs": InputsResource.from_env()}


raw_job = dg.define_asset_job(
    "raw_job", selection=dg.AssetSelection.groups("raw"), description="Ingest and validate every prompt source."
)

defs = dg.Definitions(
    assets=ASSETS,
    resources=build_resources(),
    jobs=[raw_job],
    # Runs stay in one process: on small machines the multiprocess executor's start-up dominates
    # (measured 27 s → 6 s for the raw group on 2 cores). Deployments may override per job.
    executor=dg.in_process_executor,
)
