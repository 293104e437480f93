"""Attention for a batch whose rows share long prompt prefixes (cascade attention).

The teacher's requests start with the same system prompt and worked example (~330 of ~450 prompt tokens);
a best-of-n request repeats a whole prompt n times. Stored once per row, that prefix made up most of the
KV cache each decode step reads (~1 GB per step for 64 rows on this model). Here each group's prefix keys
and values are kept once, and a step attends in two parts whose softmaxes are merged exactly:

- every row's own tokens (its prompt suffix and its answer so far), one row at a time, masked as usual;
- its group's shared prefix, all rows of the group at once: one matrix product per key/value head reads
  the prefix once for the whole group.

The merge rescales both partial results by their softmax normalizers (log-sum-exp), so the output equals
attention over the concatenated [prefix, own tokens] up to float rounding.

Used through transformers' attention registry: `register()` adds the implementation "nexa_prefix" (masks
as for sdpa), and a forward call passes `shared_prefix=SharedPrefix(...)`; without it the layer runs sdpa.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NAME = "nexa_prefix"


@dataclass
class SharedPrefix:
    """Per layer, each group's prefix keys and values (1, kv_heads, length, head_dim), and each row's group
    (-1: a row with no shared prefix)."""

    keys: list[list[Any]]  # [layer][group]
    values: list[list[Any]]
    row_group: Any  # int64 tensor (rows,)

    def select(self, rows: Any) -> None:
        """Keep only `rows` (the batch dropped the others)."""
        self.row_group = self.row_group[rows]

    def members(self) -> list[tuple[int, Any]]:
        """(group, row indices) for every group that still has rows."""
        groups = self.row_group.unique().tolist()
        return [(g, (self.row_group == g).nonzero(as_tuple=True)[0]) for g in groups if g >= 0]


def register() -> None:
    """Make "nexa_prefix" a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, prefix_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def prefix_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    shared_prefix: SharedPrefix | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention signature: query (B, H, Q, D), key/value (B, KVH, S, D) of the rows' own
    tokens, attention_mask (B, 1, Q, S) bool (True: attend) or None (causal). Returns (B, Q, H, D)."""
    if shared_prefix is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    import torch

    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    rep = heads // kv_heads
    scale = scaling if scaling is not None else dim**-0.5
    # Heads h = k * rep + r read key/value head k: group the query heads by the head they read.
    q = query.reshape(batch, kv_heads, rep * q_len, dim)

    scores = _masked(torch, torch.matmul(q, key.transpose(-1, -2)) * scale, attention_mask, rep, q_len, key.shape[2])
    own_max = _finite(torch, scores.amax(dim=-1, keepdim=True))
    weights = torch.exp(scores - own_max)
    own_sum = weights.sum(dim=-1, keepdim=True)
    own_out = torch.matmul(weights, value)  # unnormalized, (B, KVH, rep*Q, D)
    pre_max, pre_sum, pre_out = _prefix_part(torch, q, shared_prefix, module.layer_idx, own_max, own_sum, own_out,
                                             rep * q_len, scale)
    top = torch.maximum(own_max, pre_max)
    a, b = torch.exp(own_max - top), torch.exp(pre_max - top)
    total = (own_sum * a + pre_sum * b).clamp(min=torch.finfo(own_sum.dtype).tiny)
    out = (own_out * a + pre_out * b) / total  # (B, KVH, rep*Q, D)
    out = out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous()
    return out, None


def _masked(torch: Any, scores: Any, attention_mask: Any, rep: int, q_len: int, kv_len: int) -> Any:
    """Scores (B, KVH, rep*Q, S) with the mask applied: bool (True: attend), an additive bias, or None (causal)."""
    batch = scores.shape[0]
    if attention_mask is None:
        attention_mask = _causal(torch, q_len, kv_len, scores.device)
    if attention_mask.dtype == torch.bool:
        allowed = attention_mask.expand(batch, 1, q_len, kv_len)
        allowed = allowed[:, :, None].expand(batch, 1, rep, q_len, kv_len).reshape(batch, 1, rep * q_len, -1)
        return scores.masked_fill(~allowed, float("-inf"))
    bias = attention_mask.expand(batch, 1, q_len, kv_len)
    return scores + bias[:, :, None].expand(batch, 1, rep, q_len, kv_len).reshape(batch, 1, rep * q_len, -1)


def _prefix_part(
    torch: Any, q: Any, shared_prefix: SharedPrefix, layer: int, own_max: Any, own_sum: Any, own_out: Any,
    rows_q: int, scale: float,
) -> tuple[Any, Any, Any]:
    """Each row's (max, sum, unnormalized output) over its group's shared prefix keys, shaped like the row's own."""
    kv_heads, dim = q.shape[1], q.shape[-1]
    pre_max = torch.full_like(own_max, float("-inf"))
    pre_sum = torch.zeros_like(own_sum)
    pre_out = torch.zeros_like(own_out)
    for group, rows in shared_prefix.members():
        k_pre, v_pre = shared_prefix.keys[layer][group], shared_prefix.values[layer][group]
        n = rows.numel()
        # All rows of the group as one long query block per key/value head: (KVH, n*rep*Q, D).
        qg = q.index_select(0, rows).transpose(0, 1).reshape(kv_heads, n * rows_q, dim)
        s = torch.matmul(qg, k_pre[0].transpose(-1, -2)) * scale  # (KVH, n*rep*Q, P)
        m = s.amax(dim=-1, keepdim=True)
        w = torch.exp(s - m)
        back = (kv_heads, n, rows_q)
        pre_max.index_copy_(0, rows, m.reshape(*back, 1).transpose(0, 1))
        pre_sum.index_copy_(0, rows, w.sum(dim=-1, keepdim=True).reshape(*back, 1).transpose(0, 1))
        pre_out.index_copy_(0, rows, torch.matmul(w, v_pre[0]).reshape(*back, dim).transpose(0, 1))
    return pre_max, pre_sum, pre_out


def _finite(torch: Any, m: Any) -> Any:
    """Row maxima with -inf (a fully masked row: a padding query) replaced by 0, so no inf - inf appears."""
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def _causal(torch: Any, q_len: int, kv_len: int, device: Any) -> Any:
    """The causal mask of the newest q_len positions over kv_len keys, (1, 1, Q, S) bool."""
    offset = kv_len - q_len
    rows = torch.arange(q_len, device=device)[:, None] + offset
    return (torch.arange(kv_len, device=device)[None, :] <= rows)[None, None]
