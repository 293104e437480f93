"""train/checkpoints: train a student on an exact sft/examples version, wherever `compute` runs it."""

from collections.abc import Iterator
from dataclasses import fields, replace

import dagster as dg
from pydantic import Field

from nexa_assets.metadata import materialization
from nexa_assets.rounds import round_field, run_lineage
from nexa_assets.table_asset import table_asset
from nexa_assets.train.checks import loss_fell, loss_fell_spec
from nexa_assets.train.config import TrainConfig
from nexa_assets.train.local import TrainingCompute
from nexa_assets.train.presets import PRESETS
from nexa_assets.train.register import artifact_uri, checkpoint_id, checkpoint_row
from nexa_assets.train.report import checkpoint_metadata
from nexa_resources.lake import LakeResource


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
        default=DEFAULTS.distill_loss,
        description="none | kd: add a KL term to the teacher's stored top-k "
        "probabilities (distill/logprobs; docs/distill.md).",
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


def _plan(
    config: CheckpointConfig, lake: LakeResource, compute: TrainingCompute
) -> tuple[TrainConfig, int, str | None]:
    """(the train config, the sft/examples version, the compute backend) of a run, or a Failure saying what to fix."""
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
    return train_config, version, actual


def _with_logprobs(train_config: TrainConfig, lake: LakeResource) -> TrainConfig:
    """A KD config with the exact distill/logprobs URI and version it trains on (the latest when unset)."""
    latest = lake.version("distill/logprobs")
    if latest is None:
        raise dg.Failure(
            "distill_loss=kd needs distill/logprobs: materialize it first (docs/distill.md), or set distill_loss: none"
        )
    chosen = latest if train_config.logprobs_version is None else train_config.logprobs_version
    return replace(train_config, logprobs_uri=lake.uri("distill/logprobs"), logprobs_version=int(chosen))


DESCRIPTION = (
    "A student trained on one exact sft/examples version (TRL SFTTrainer, completion-only loss) "
    "by the `compute` resource (local subprocess or SkyPilot GPU), registered with its SFT version, config, "
    "where it ran, price, cost, tokens/s and losses."
)


# distill/logprobs: KD trains on them; a round scores its SFT rows before training.
@table_asset(
    "train/checkpoints",
    loss_fell_spec(),
    deps=["sft/examples", "distill/logprobs"],
    description=DESCRIPTION,
    engine="pytorch",
)
def train_checkpoints(
    context: dg.AssetExecutionContext,
    config: CheckpointConfig,
    lake: LakeResource,
    compute: dg.ResourceParam[TrainingCompute],
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Train on the current (or configured) sft/examples version and merge the checkpoint's row."""
    train_config, version, actual = _plan(config, lake, compute)
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
    lineage = run_lineage(context, config.round, lake)
    written = lake.write("train/checkpoints", checkpoint_row(checkpoint, uri, result), mode="merge", lineage=lineage)
    context.log.info(
        f"checkpoint {checkpoint}: {result.get('steps')} steps, train loss {result.get('train_loss')}, "
        f"val loss {result.get('val_loss')}, {result.get('tokens_per_s')} tok/s, ${result.get('cost_usd') or 0:.4f}"
    )
    yield materialization("train/checkpoints", written, lake, **checkpoint_metadata(result, uri, checkpoint))
    yield loss_fell(result)
