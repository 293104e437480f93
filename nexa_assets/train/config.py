"""The trainer's typed configuration: one file (YAML or JSON) or dict, validated before anything loads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from nexa_assets.train.presets import DEFAULT_PRESET, StudentPreset, get_preset


@cache
def fast_bf16() -> bool:
    """A CUDA GPU, or a CPU with native bf16 matrix instructions (Linux /proc/cpuinfo flags)."""
    import torch

    if torch.cuda.is_available():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


DISTILL_LOSSES: tuple[str, ...] = ("none", "kd")
KD_FIELDS: tuple[str, ...] = ("distill_loss", "kd_temperature", "kd_weight", "logprobs_uri", "logprobs_version")


@dataclass
class TrainConfig:
    """How to train one student. Fields left `None` take the preset's default."""

    preset: str = DEFAULT_PRESET
    base_model: str | None = None  # overrides the preset's weights: a local folder or a hub id
    lora: bool | None = None
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    learning_rate: float | None = None
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    # 4, not 8: SFT sets of 10–50 rows get 3× more optimizer steps per epoch at the same cost.
    batch_size: int = 4
    grad_accum: int = 1
    max_seq_len: int = 512
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    seed: int = 0
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 1
    bf16: bool | None = None
    # Pack rows into max_seq_len blocks (TRL's best-fit decreasing), padding-free; off: each batch is padded to
    # its longest row, never to max_seq_len.
    packing: bool = False
    gradient_checkpointing: bool = False
    eval_split: str | None = "val"  # the split scored for val_loss at the end (None: skip)
    num_threads: int | None = None  # torch intra-op threads on CPU (None: torch's default)
    # Rows of the table's newest round (the prompts feedback bought for weak cells) appear this many times
    # per epoch; earlier rounds' rows once (replay). 1: every row once (2 measured no better; docs/loop.md).
    newest_round_weight: int = 1
    # Soft-label distillation (docs/distill.md): "kd" adds kd_weight x T^2 x forward KL(teacher top-k
    # renormalized || student) on the answer positions stored in distill/logprobs to the cross-entropy.
    distill_loss: str = "none"
    kd_temperature: float = 1.0
    kd_weight: float = 0.5
    logprobs_uri: str | None = None  # the distill/logprobs table (default: beside the SFT table in its lake)
    logprobs_version: int | None = None  # its Delta version (default: the latest, recorded in metrics)

    def __post_init__(self) -> None:
        get_preset(self.preset)  # fails early, listing the valid presets
        positive = {"batch_size": self.batch_size, "grad_accum": self.grad_accum, "max_seq_len": self.max_seq_len,
                    "save_steps": self.save_steps, "logging_steps": self.logging_steps, "lora_r": self.lora_r,
                    "newest_round_weight": self.newest_round_weight}
        bad = [f"{k}={v}" for k, v in positive.items() if not isinstance(v, int) or v <= 0]
        if bad:
            raise ValueError(f"train config: {', '.join(bad)}; these must be positive integers")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError("train config: set epochs > 0 or max_steps > 0")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"train config: learning_rate={self.learning_rate} must be > 0")
        if self.distill_loss not in DISTILL_LOSSES:
            raise ValueError(
                f"train config: distill_loss={self.distill_loss!r}: valid values are {', '.join(DISTILL_LOSSES)}"
            )
        if self.kd_temperature <= 0 or self.kd_weight < 0:
            raise ValueError(
                f"train config: kd_temperature={self.kd_temperature} must be > 0 and kd_weight={self.kd_weight} >= 0"
            )
        if self.distill_loss == "kd" and self.packing:
            raise ValueError("train config: distill_loss=kd needs packing: false (positions are per row)")

    @property
    def student(self) -> StudentPreset:
        return get_preset(self.preset)

    @property
    def use_lora(self) -> bool:
        return self.student.lora if self.lora is None else self.lora

    @property
    def lr(self) -> float:
        return self.student.learning_rate if self.learning_rate is None else self.learning_rate

    @property
    def use_bf16(self) -> bool:
        """The config's bf16, else the preset's where this machine computes bf16 fast (a GPU, or a CPU with
        AVX512-BF16/AMX): without those a CPU multiplies bf16 ~100x slower than fp32 (measured)."""
        if self.bf16 is not None:
            return self.bf16
        return self.student.bf16 and fast_bf16()

    @property
    def model_source(self) -> str:
        return self.base_model or self.student.model

    def to_dict(self) -> dict[str, Any]:
        """The fields; the KD ones only when KD is on, so a default config (its hash, run.json) is unchanged."""
        data = asdict(self)
        if self.distill_loss == "none":
            for key in KD_FIELDS:
                data.pop(key)
        return data

    def resolved(self) -> dict[str, Any]:
        """The config with preset defaults filled in: what actually trains (recorded in metrics.json)."""
        return {**self.to_dict(), "lora": self.use_lora, "learning_rate": self.lr, "bf16": self.use_bf16,
                "base_model": self.model_source}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainConfig:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown train config keys {unknown}: valid keys are {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a YAML (.yaml/.yml) or JSON file; an empty file means all defaults."""
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text) if text.strip() else {}
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"{path}: a train config is a mapping of keys to values, got {type(data).__name__}")
        return cls.from_dict(data)
