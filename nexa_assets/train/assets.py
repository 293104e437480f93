"""train/checkpoints: train a student on an exact sft/examples version, wherever `compute` runs it."""

from collections.abc import Iterator
from dataclasses import fields, replace
from typing import Any

import dagster as dg
from pydantic import Field

from nexa_assets.rounds import resolve_round, round_field
from nexa_assets.train.config import TrainConfig
from nexa_assets.train.local import TrainingCompute
from nexa_assets.train.presets import PRESETS
from nexa_assets.train.register import artifact_uri, checkpoint_id, checkpoint_row
from nexa_assets.train.report import loss_plot_markdown
from nexa_resources.lake import LakeResource, Lineage

CHECKPOINTS = dg.AssetKey(["train", "checkpoints"])
EXAMPLES = dg.AssetKey(["sft", "examples"])
LOGPROBS = dg.AssetKey(["distill", "logprobs"])  # kd trains on them; a round scores its SFT rows before training


DEFAULTS = TrainConfig()


class CheckpointConfig(dg.Config):
    """What to train (the student preset and its hyperparameters) and on which SFT version; defaults: TrainConfig's."""

    preset: str = Field(default=DEFAULTS.preset, description=f"Student preset: {', '.join(PRESETS)}.")
    max_steps: int = Field(default=DEFAULTS.max_steps, description="Optimizer steps; > 0 overrides epochs.")
    epochs: float = Field(
        default=DEFAULTS.epochs, gt=0, description="Passes over the train split (when max_steps <= 0)."
    )
    learning_rate: float | None = Field(
        default=DEFAULTS.learning_rate, gt=0, description="Peak learning rate (preset default)."
    )
    batch_size: int = Field(
        default=DEFAULTS.batch_size, gt=0, description="Rows per optimizer step (4 suits SFT sets of 10–50 rows)."
    )
    grad_accum: int = Field(default=DEFAULTS.grad_accum, gt=0, description="Gradient accumulation steps.")
    max_seq_len: int = Field(default=DEFAULTS.max_seq_len, gt=0, description="Longer rows are cut from the end.")
    lora: bool | None = Field(default=DEFAULTS.lora, description="LoRA instead of a full fine-tune (preset default).")
    lora_r: int = Field(default=DEFAULTS.lora_r, gt=0)
    lora_alpha: int = Field(default=DEFAULTS.lora_alpha, gt=0)
    bf16: bool | None = Field(default=DEFAULTS.bf16, description="bf16 autocast (preset default).")
    seed: int = DEFAULTS.seed
    save_steps: int = Field(
        default=DEFAULTS.save_steps, gt=0, description="Checkpoint every this many steps (resumable)."
    )
    sft_version: int | None = Field(default=None, ge=0, description="sft/examples version to train on (latest).")
    backend: str | None = Field(
        default=None, description="Expected compute backend (local | skypilot): fail fast if `compute` differs."
    )
    output_uri: str | None = Field(
        default=None, description="Where the checkpoint goes (default <lake root>/train/artifacts/<checkpoint_id>)."
    )
    round: int | None = round_field()
    distill_loss: str = Field(
        default=DEFAULTS.distill_loss, description="none | kd: add a KL term to the teacher's stored top-k "
        "probabilities (distill/logprobs; docs/distill.md)."
    )
    kd_temperature: float = Field(
        default=DEFAULTS.kd_temperature, gt=0, description="KD softmax temperature (the KL is scaled by T²)."
    )
    kd_weight: float = Field(
        default=DEFAULTS.kd_weight, ge=0, description="Weight of the KD term beside the cross-entropy."
    )
    logprobs_version: int | None = Field(
        default=DEFAULTS.logprobs_version, ge=0, description="distill/logprobs version KD reads (latest)."
    )

    def train_config(self) -> TrainConfig:
        """The TrainConfig of the fields both share; the rest keep TrainConfig's defaults."""
        shared = {f.name for f in fields(TrainConfig)} & set(type(self).model_fields)
        return TrainConfig(**{name: getattr(self, name) for name in shared})


def _with_logprobs(train_config: TrainConfig, lake: LakeResource) -> TrainConfig:
    """A KD config with the exact distill/logprobs URI and version it trains on (the latest when unset)."""
    latest = lake.version("distill/logprobs")
    if latest is None:
        raise dg.Failure(
            "distill_loss=kd needs distill/logprobs: materialize it first (docs/distill.md), or set distill_loss: none"
        )
    chosen = latest if train_config.logprobs_version is None else train_config.logprobs_version
    return replace(train_config, logprobs_uri=lake.uri("distill/logprobs"), logprobs_version=int(chosen))


def _text(value: Any) -> str:
    return "none" if value is None else str(value)


def _metadata(result: dict[str, Any], uri: str, checkpoint: str) -> dict[str, Any]:
    uri_value = dg.MetadataValue.url(uri) if "://" in uri else dg.MetadataValue.path(uri)
    title = f"{result.get('preset')} on sft/examples v{result.get('sft_version')}"
    return {
        "checkpoint_id": checkpoint,
        "checkpoint_uri": uri_value,
        "sft_version": int(result["sft_version"]),
        "sft_rows": result.get("rows"),
        "preset": result.get("preset"),
        "base_model": result.get("base_model"),
        "backend": result.get("backend"),
        "cloud": _text(result.get("cloud")),
        "region": _text(result.get("region")),
        "accelerator": _text(result.get("accelerator")),
        "price_per_hour": float(result.get("price_per_hour") or 0.0),
        "cost_usd": float(result.get("cost_usd") or 0.0),
        "tokens_per_s": float(result.get("tokens_per_s") or 0.0),
        "tokens": int(result.get("tokens") or 0),
        "steps": int(result.get("steps") or 0),
        "wall_s": float(result.get("wall_s") or 0.0),
        "train_loss": float(result["train_loss"]) if result.get("train_loss") is not None else None,
        "val_loss": float(result["val_loss"]) if result.get("val_loss") is not None else None,
        "resumed_from_step": result.get("resumed_from_step"),
        "loss_curve": dg.MetadataValue.md(
            loss_plot_markdown(result.get("loss_curve") or [], result.get("val_loss"), title)
        ),
        "config": dg.MetadataValue.json(result.get("config") or {}),
        **({"distill_loss": "kd", "logprobs_version": int(result["logprobs_version"]),
            "kd": dg.MetadataValue.json(result.get("kd") or {})} if result.get("distill_loss") == "kd" else {}),
    }


@dg.asset(
    key=CHECKPOINTS,
    deps=[EXAMPLES, LOGPROBS],
    group_name="train",
    kinds={"pytorch", "deltalake"},
    description="A student trained on one exact sft/examples version (TRL SFTTrainer, completion-only loss) "
    "by the `compute` resource (local subprocess or SkyPilot GPU), registered with its SFT version, config, "
    "where it ran, price, cost, tokens/s and losses.",
    check_specs=[dg.AssetCheckSpec("loss_fell", asset=CHECKPOINTS, description="Final train loss below the first.")],
)
def train_checkpoints(
    context: dg.AssetExecutionContext,
    config: CheckpointConfig,
    lake: LakeResource,
    compute: dg.ResourceParam[TrainingCompute],
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Train on the current (or configured) sft/examples version and merge the checkpoint's row."""
    try:
        train_config = config.train_config()
    except ValueError as exc:
        raise dg.Failure(f"bad train config: {exc}") from None
    version = config.sft_version if config.sft_version is not None else lake.version("sft/examples")
    if version is None:
        raise dg.Failure("sft/examples does not exist yet: materialize the sft group first")
    actual = getattr(compute, "backend", None)
    if config.backend is not None and actual is not None and config.backend != actual:
        raise dg.Failure(
            f"this run asks for compute backend {config.backend!r} but the `compute` resource is {actual!r}; "
            "set NEXA_COMPUTE_BACKEND (or the resource config) to change it"
        )
    if train_config.distill_loss == "kd":
        train_config = _with_logprobs(train_config, lake)
    checkpoint = checkpoint_id(context.run.run_id, version, train_config.to_dict())
    uri = config.output_uri or artifact_uri(lake.root_uri(), checkpoint)
    context.log.info(f"training {train_config.preset} on sft/examples v{version} via {actual or 'compute'} → {uri}")

    result = compute.run_training(
        sft_uri=lake.uri("sft/examples"),
        sft_version=version,
        output_uri=uri,
        config=train_config.to_dict(),
        run_id=context.run.run_id,
        log=context.log,
    )
    if int(result.get("sft_version", version)) != int(version):
        raise dg.Failure(f"compute trained on sft/examples v{result.get('sft_version')}, asked for v{version}")
    # What was asked for, unless the backend reports what actually trained (the trainer's metrics.json does).
    asked = {"preset": train_config.preset, "base_model": train_config.model_source, "config": train_config.resolved()}
    result = {**asked, **{k: v for k, v in result.items() if v is not None}, "sft_version": int(version)}
    written = lake.write(
        "train/checkpoints",
        checkpoint_row(checkpoint, uri, result),
        mode="merge",
        lineage=Lineage(run_id=context.run.run_id, round=resolve_round(context, config.round, lake)),
    )
    context.log.info(
        f"checkpoint {checkpoint}: {result.get('steps')} steps, train loss {result.get('train_loss')}, "
        f"val loss {result.get('val_loss')}, {result.get('tokens_per_s')} tok/s, ${result.get('cost_usd') or 0:.4f}"
    )
    yield dg.MaterializeResult(
        asset_key=CHECKPOINTS,
        metadata={**written.metadata(), "dagster/row_count": lake.read("train/checkpoints").height,
                  **_metadata(result, uri, checkpoint)},
    )
    first, last = result.get("first_loss"), result.get("train_loss")
    yield dg.AssetCheckResult(
        asset_key=CHECKPOINTS,
        check_name="loss_fell",
        passed=first is not None and last is not None and last < first,
        metadata={"first_loss": first, "train_loss": last, "steps": result.get("steps")},
    )
