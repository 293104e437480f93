"""Nucleus sampling of the batching server: the fast path over the most likely tokens is exact."""

from __future__ import annotations

import torch

from nexa_resources.batch_server import TOP_P_CANDIDATES, _pick


def _draws(logits: torch.Tensor, top_p: float, n: int = 4000) -> set[int]:
    torch.manual_seed(0)
    rows = logits.expand(n, -1).clone()
    return set(_pick(torch, rows, 1.0, top_p).tolist())


def test_a_peaked_distribution_samples_exactly_its_nucleus():
    logits = torch.full((1, 49152), -20.0)
    logits[0, [7, 40000, 123]] = torch.tensor([3.0, 2.5, 2.0])  # ~0.50, ~0.30, ~0.18 of the mass
    assert _draws(logits, top_p=0.75) == {7, 40000}  # 0.50 < 0.75, then 0.80 crosses it: both, nothing more
    assert _draws(logits, top_p=0.95) == {7, 40000, 123}


def test_a_nucleus_wider_than_the_fast_path_falls_back_to_the_whole_vocabulary():
    logits = torch.zeros((1, 4 * TOP_P_CANDIDATES))  # flat: the nucleus is ~90% of the vocabulary
    drawn = _draws(logits, top_p=0.9, n=20000)
    assert max(drawn) >= 2 * TOP_P_CANDIDATES  # tokens past the first TOP_P_CANDIDATES are reachable
    assert len(drawn) > 0.8 * 4 * TOP_P_CANDIDATES
