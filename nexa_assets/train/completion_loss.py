"""SFTTrainer with a completion-only loss that projects only the completion positions through the LM head.

TRL 1.16 computes the loss with a "fused LM head" that, off Triton devices (so on CPU), scores *every*
position in tiles, recomputes the tiles in backward, and adds entropy and top-1 accuracy for its metrics.
With SmolLM2's 49,152-token vocabulary the LM head is ~80% of the tiny student's FLOPs, so that made the
trainer run at ~0.5x a bare torch loop (bench/train.py). Here the backbone runs once, the hidden states of
positions whose next-token label is not -100 (the completion, EOS included) go through the LM head, and the
loss is their summed cross-entropy over the batch's label count, exactly as TRL normalizes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from trl import SFTTrainer

IGNORE_INDEX = -100


def causal_lm(model: Any) -> Any | None:
    """The PreTrainedModel behind `model` (PEFT wrappers unwrapped), or None when a distributed wrapper holds it:
    those must be called through their own forward, so the stock loss is used."""
    if hasattr(model, "get_base_model"):  # peft.PeftModel: LoRA layers live inside the base model's modules
        model = model.get_base_model()
    prefix = getattr(model, "base_model_prefix", None)
    if not prefix or not hasattr(model, prefix) or not hasattr(model, "get_output_embeddings"):
        return None
    return model if model.get_output_embeddings() is not None else None


def completion_loss(lm: Any, inputs: Mapping[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions, computing logits for those positions only."""
    labels = inputs["labels"]
    features = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels")}
    hidden = getattr(lm, lm.base_model_prefix)(**features, use_cache=False).last_hidden_state
    if "shift_labels" in inputs:
        targets = inputs["shift_labels"]
    else:
        hidden, targets = hidden[:, :-1], labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logits = lm.get_output_embeddings()(hidden[mask]).float()
    loss_sum = F.cross_entropy(logits, targets[mask], reduction="sum")
    count = mask.sum() if num_items_in_batch is None else num_items_in_batch
    return loss_sum / torch.as_tensor(count, device=loss_sum.device).clamp(min=1)


class CompletionLossSFTTrainer(SFTTrainer):
    """SFTTrainer whose training and eval loss skip the LM head on prompt and padding positions."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        lm = causal_lm(model)
        if return_outputs or lm is None or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # accelerate applies mixed precision by wrapping model.forward; the backbone is called directly here
        with self.accelerator.autocast():
            loss = completion_loss(lm, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return loss
