"""Soft-label distillation (`distill_loss: kd`): the teacher's stored top-k next-token log-probabilities
(distill/logprobs at an exact Delta version, joined to the SFT rows by request_id) as a second loss term.

loss = CE(completion tokens) + kd_weight × T² × KL(q ‖ p), per answer position that has a teacher row, where
q = softmax(top_logprobs / T) over the teacher's top-k ids only (renormalized: the teacher's mass outside its
top-k is dropped, not spread) and p = the student's softmax(logits / T) over the full vocabulary, read at those
ids. So the KL is exact between the renormalized teacher and the student: student mass outside the teacher's
top-k is what the term pushes down. A position is used only where the stored answer token equals the student's
label there (same tokenizer, same text), so a misaligned row costs nothing but its KD term.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import torch
import torch.nn.functional as F

from nexa_assets.train.completion_loss import IGNORE_INDEX, CompletionLossSFTTrainer, causal_lm

KD_ROW = "kd_row"  # dataset column: index of the row's teacher probabilities (-1: none)


class TokenizerMismatch(RuntimeError):
    """The teacher's probabilities are over another vocabulary than the student's."""


def default_logprobs_uri(sft_uri: str) -> str:
    """`<lake root>/distill/logprobs` for an SFT table at `<lake root>/sft/examples`."""
    root = sft_uri.rstrip("/").rsplit("/", 2)[0]
    return f"{root}/distill/logprobs"


@dataclass(frozen=True)
class TeacherRow:
    """One answer's teacher probabilities, by answer position."""

    token_ids: list[int]  # the answer token at each position (-1 where unknown)
    top_ids: list[list[int]]  # k ids per position (-1 where unknown)
    top_logprobs: list[list[float]]


def teacher_rows(table: pl.DataFrame, request_ids: Sequence[str]) -> dict[str, TeacherRow]:
    """The stored rows of these requests, grouped per request in position order (gaps left empty)."""
    rows = table.filter(pl.col("request_id").is_in(list(request_ids))).sort("request_id", "position")
    out: dict[str, TeacherRow] = {}
    for (rid,), group in rows.group_by(["request_id"], maintain_order=True):
        n = int(group["position"].max()) + 1
        k = int(group["top_k"].max())
        ids, tops, lps = [-1] * n, [[-1] * k for _ in range(n)], [[0.0] * k for _ in range(n)]
        for r in group.iter_rows(named=True):
            p = r["position"]
            ids[p] = -1 if r["token_id"] is None else int(r["token_id"])
            top = [(-1 if t is None else int(t)) for t in (r["top_token_ids"] or [])][:k]
            lp = [float(v) for v in (r["top_logprobs"] or [])][:k]
            tops[p][: len(top)], lps[p][: len(lp)] = top, lp
        out[str(rid)] = TeacherRow(ids, tops, lps)
    return out


def check_tokenizer(identities: Sequence[str], names: Sequence[str], student_identity: str, student: str) -> None:
    """Fail at once when the stored probabilities are over another vocabulary than the student's."""
    other = sorted({i for i in identities if i != student_identity})
    if other:
        teacher = ", ".join(f"{i} ({n})" for i, n in sorted(set(zip(identities, names))) if i in other)
        raise TokenizerMismatch(
            f"distill_loss=kd: the teacher's probabilities are over tokenizer {teacher}, the student {student} uses "
            f"tokenizer {student_identity}; KD needs the same tokenizer. Set distill_loss: none to train without it, "
            "or pick a student with the teacher's tokenizer."
        )


class KDCollator:
    """TRL's collator plus, per batch, the teacher's top-k ids/log-probs aligned to the label positions."""

    def __init__(self, base: Any, teacher: Sequence[TeacherRow], top_k: int) -> None:
        self.base, self.teacher, self.k = base, teacher, top_k

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [ex.pop(KD_ROW, -1) for ex in examples]
        batch = self.base(examples)
        if all(r < 0 for r in rows):
            return batch
        labels = batch["labels"]
        shape = (*labels.shape, self.k)
        ids = torch.full(shape, -1, dtype=torch.long)
        lps = torch.zeros(shape, dtype=torch.float32)
        for b, r in enumerate(rows):
            if r < 0:
                continue
            t = self.teacher[r]
            positions = (labels[b] != IGNORE_INDEX).nonzero().flatten().tolist()
            for p, col in enumerate(positions[: len(t.token_ids)]):
                if t.token_ids[p] != int(labels[b, col]):
                    continue  # another token here than the teacher scored: no KD at this position
                ids[b, col] = torch.tensor(t.top_ids[p][: self.k])
                lps[b, col] = torch.tensor(t.top_logprobs[p][: self.k])
        batch["kd_ids"], batch["kd_logprobs"] = ids, lps
        return batch


def kd_loss(
    lm: Any, inputs: Mapping[str, Any], temperature: float, weight: float, num_items_in_batch: Any = None
) -> tuple[torch.Tensor, float | None, float, int]:
    """(CE + weight·T²·KL, mean KL per KD position or None, CE, KD positions), logits for labelled positions only."""
    labels = inputs["labels"]
    features = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels", "kd_ids", "kd_logprobs")}
    hidden = getattr(lm, lm.base_model_prefix)(**features, use_cache=False).last_hidden_state
    hidden, targets = hidden[:, :-1], labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logits = lm.get_output_embeddings()(hidden[mask]).float()
    ce_sum = F.cross_entropy(logits, targets[mask], reduction="sum")
    count = mask.sum() if num_items_in_batch is None else num_items_in_batch
    denom = torch.as_tensor(count, device=ce_sum.device).clamp(min=1)
    ce = ce_sum / denom
    if "kd_ids" not in inputs:
        return ce, None, float(ce.detach()), 0
    ids = inputs["kd_ids"][:, 1:][mask].to(logits.device)  # [N, k]
    lps = inputs["kd_logprobs"][:, 1:][mask].to(logits.device)
    valid = ids >= 0  # [N, k]
    used = valid.any(dim=1)
    if not bool(used.any()):
        return ce, None, float(ce.detach()), 0
    ids, lps, valid, logits = ids[used], lps[used], valid[used], logits[used]
    # Teacher: top-k renormalized at temperature T (entries without an id get no mass).
    q_logits = (lps / temperature).masked_fill(~valid, float("-inf"))
    log_q = torch.log_softmax(q_logits, dim=-1)
    q = log_q.exp()
    # Student: the full-vocabulary distribution at temperature T, read at the teacher's ids.
    log_p = torch.log_softmax(logits / temperature, dim=-1).gather(1, ids.clamp(min=0))
    kl_rows = (q * (log_q.masked_fill(~valid, 0.0) - log_p)).masked_fill(~valid, 0.0).sum(dim=1)
    kl_sum = kl_rows.sum()
    loss = ce + weight * temperature**2 * kl_sum / denom
    positions = int(used.sum())
    return loss, float(kl_sum.detach()) / positions, float(ce.detach()), positions


class KDSFTTrainer(CompletionLossSFTTrainer):
    """CompletionLossSFTTrainer whose training loss adds the KD term on rows with teacher probabilities; the
    KL per position and the CE are logged as `kd_kl` and `kd_ce` each logging step (eval loss stays plain CE)."""

    def __init__(self, *args: Any, kd_temperature: float, kd_weight: float, teacher: Sequence[TeacherRow],
                 top_k: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kd_temperature, self.kd_weight = kd_temperature, kd_weight
        self.data_collator: Any = KDCollator(self.data_collator, teacher, top_k)
        self.kd_positions = 0

    def _set_signature_columns_if_needed(self):  # noqa: ANN202
        super()._set_signature_columns_if_needed()
        if KD_ROW not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, KD_ROW]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        lm = causal_lm(model)
        if "kd_ids" not in inputs or return_outputs or lm is None:
            inputs = {k: v for k, v in inputs.items() if k not in ("kd_ids", "kd_logprobs")}
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        with self.accelerator.autocast():
            loss, kl, ce, positions = kd_loss(lm, inputs, self.kd_temperature, self.kd_weight, num_items_in_batch)
        if kl is not None:
            self._metrics["train"]["kd_kl"].append(kl)
            self.kd_positions += positions
        self._metrics["train"]["kd_ce"].append(ce)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return loss
