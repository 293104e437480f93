"""Every asset and asset check of Nexa, in graph order (definitions, jobs and sensors read this list)."""

from __future__ import annotations

import dagster as dg

from nexa_assets.distill.assets import distill_completions, distill_pairs
from nexa_assets.distill.logprobs_asset import distill_logprobs
from nexa_assets.evaluate.assets import ASSETS as EVAL_ASSETS
from nexa_assets.feedback.assets import ASSETS as FEEDBACK_ASSETS
from nexa_assets.raw.assets import raw_prompts
from nexa_assets.sft.assets import sft_decontamination, sft_examples
from nexa_assets.train.assets import train_checkpoints

ASSETS: list[dg.AssetsDefinition] = [
    raw_prompts,
    distill_completions,
    distill_pairs,
    sft_examples,
    distill_logprobs,  # off by default: a skipped step unless top_k / teacher top_logprobs is set
    train_checkpoints,
    *EVAL_ASSETS,
    *FEEDBACK_ASSETS,
]
ASSET_CHECKS = [sft_decontamination]


def op_config_fields(asset: dg.AssetsDefinition) -> frozenset[str]:
    """The config fields an asset's op takes (empty when it takes none)."""
    field = asset.op.config_field
    if field is None or not hasattr(field.config_type, "fields"):
        return frozenset()
    return frozenset(field.config_type.fields)


def ops_taking(field: str) -> list[str]:
    """Op names of the assets whose config has `field` (e.g. every op that records the round)."""
    return [a.op.name for a in ASSETS if field in op_config_fields(a)]


OP_NAMES: frozenset[str] = frozenset(a.op.name for a in ASSETS)
