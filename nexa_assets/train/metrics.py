"""metrics.json: what a training run reports (data, steps, tokens, speed, losses, device, versions)."""

from __future__ import annotations

import math
import platform
from datetime import datetime
from pathlib import Path
from typing import Any

from nexa_assets.train.config import TrainConfig

# train_loss in the metrics is the mean of the last logged losses (one per step by default): a steadier
# number than the last step alone.
FINAL_LOSS_WINDOW = 5


def run_metrics(
    config: TrainConfig,
    trainer: Any,
    *,
    sft_uri: str,
    sft_version: int,
    output: str,
    started_at: datetime,
    rows: tuple[int, int],
    manifest: dict[str, Any],
    params: tuple[int, int],
    val_loss: float | None,
    runtime: float,
    resume: Path | None,
    tokens_before: int,
    kd: Any,
    cuda: bool,
) -> dict[str, Any]:
    """The run's metrics (all but wall_s): `rows` (train, val), `params` (all, trainable), `kd` from _kd_teacher."""
    import torch

    return {
        "preset": config.preset,
        "base_model": config.model_source,
        "lora": config.use_lora,
        "params": params[0],
        "trainable_params": params[1],
        "sft_uri": sft_uri,
        "sft_version": int(sft_version),
        "rows": rows[0],
        "val_rows": rows[1],
        "rows_sha256": manifest["train_ids_sha256"],
        "data_sha256": manifest["sha256"],
        **_progress_metrics(trainer.state, runtime, tokens_before),
        "val_loss": val_loss if val_loss is None or math.isfinite(val_loss) else None,
        "resumed_from_step": int(resume.name.split("-")[1]) if resume else None,
        "device": _device(torch, cuda),
        "bf16": config.use_bf16,
        "config": config.resolved(),
        **(
            {
                "distill_loss": "kd",
                "logprobs_uri": config.logprobs_uri,
                "logprobs_version": config.logprobs_version,
                "kd": {**kd[3], **_kd_metrics(trainer.state)},
            }
            if kd is not None
            else {}
        ),
        "output": output,
        "started_at": started_at.isoformat(),
        "versions": _versions(),
    }


def _progress_metrics(state: Any, runtime: float, tokens_before: int) -> dict[str, Any]:
    """Steps, tokens, speed and the loss curve from the trainer state (restored across resumes)."""
    curve = [[int(h["step"]), float(h["loss"])] for h in state.log_history if "loss" in h]
    window = [loss for _, loss in curve[-FINAL_LOSS_WINDOW:]]
    tokens_run = state.num_input_tokens_seen - tokens_before
    return {
        "steps": int(state.global_step),
        "epochs": float(state.epoch or 0.0),
        "tokens": int(state.num_input_tokens_seen),
        "tokens_this_run": int(tokens_run),
        "train_s": round(runtime, 3),
        "tokens_per_s": round(tokens_run / runtime, 1) if runtime > 0 else 0.0,
        "train_loss": sum(window) / len(window) if window else None,
        "first_loss": curve[0][1] if curve else None,
        "loss_curve": curve,
    }


def _kd_metrics(state: Any) -> dict[str, Any]:
    """The KD term's curve (mean KL per position at each logged step) and its first and last values."""
    curve = [[int(h["step"]), float(h["kd_kl"])] for h in state.log_history if "kd_kl" in h]
    ce = [[int(h["step"]), float(h["kd_ce"])] for h in state.log_history if "kd_ce" in h]
    return {
        "kl_curve": curve,
        "ce_curve": ce,
        "first_kl": curve[0][1] if curve else None,
        "final_kl": curve[-1][1] if curve else None,
    }


def _device(torch: Any, cuda: bool) -> str:
    """The GPU's name, or "cpu (<arch>, <n> threads)"."""
    return torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
    }
