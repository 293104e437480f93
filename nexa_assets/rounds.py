"""Feedback rounds: which round a run belongs to, and the run tags that carry it."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nexa_resources.lake import LakeResource, Lineage

ROUND_TAG = "nexa/round"
FOCUS_TAG = "nexa/focus_cells"
TRIGGER_TAG = "nexa/trigger"
# The next round's estimated USD ("0.012345", or "unknown" when a price is unknown): feedback/weaknesses metadata
# and the run the feedback sensor requests for that round.
ESTIMATE_TAG = "nexa/estimated_cost_usd"


def round_field() -> Any:
    """The `round` field every asset config shares: unset resolves through `resolve_round`."""
    return Field(
        default=None, description="Feedback round (lineage); unset: the run's nexa/round tag, else the latest round."
    )


def latest_round(lake: LakeResource) -> int:
    """The newest round the loop has evaluated (0 before the first evaluation)."""
    weaknesses = lake.read("feedback/weaknesses", columns=["round"], missing_ok=True)
    if weaknesses.is_empty():
        return 0
    return int(weaknesses["round"].max())  # type: ignore[arg-type]


def resolve_round(context: Any, configured: int | None, lake: LakeResource) -> int:
    """A run's round: its config when set, else the run's `nexa/round` tag (set by the feedback sensor),
    else the latest evaluated round (a manual run re-does the current round)."""
    if configured is not None:
        return configured
    tag = context.run.tags.get(ROUND_TAG) if getattr(context, "run", None) is not None else None
    if tag is not None:
        try:
            return int(tag)
        except ValueError:
            raise ValueError(f"run tag {ROUND_TAG}={tag!r} is not an integer round") from None
    return latest_round(lake)


def run_lineage(context: Any, configured: int | None, lake: LakeResource) -> Lineage:
    """The lineage of what a run writes: its run id and its round (`resolve_round`)."""
    return Lineage.from_context(context, resolve_round(context, configured, lake))
