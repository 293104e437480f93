"""Deterministic prompt generator: topic × aspect × task template, seeded; the feedback loop calls it."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from nexa_core.taxonomy import DOMAINS, TASK_TYPES

GENERATOR_FILE = "generator.json"


@dataclass(frozen=True)
class Vocabulary:
    version: int
    domains: dict[str, dict[str, list[str]]]
    templates: dict[str, list[str]]

    def capacity(self, domain: str, task_type: str) -> int:
        cell = self.domains[domain]
        return len(cell["topics"]) * len(cell["aspects"]) * len(self.templates[task_type])


@cache
def vocabulary() -> Vocabulary:
    """The generator's vocabulary, shipped as package data (nexa_assets/raw/data/generator.json)."""
    raw: dict[str, Any] = json.loads(
        resources.files("nexa_assets.raw").joinpath("data", GENERATOR_FILE).read_text(encoding="utf-8")
    )
    return Vocabulary(version=int(raw["version"]), domains=raw["domains"], templates=raw["templates"])


def generate_prompts(
    domain: str,
    task_type: str,
    n: int,
    *,
    seed: int = 0,
    hints: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """N distinct instructions for one (domain, task_type), the same for the same seed.

    Hints (what a judge found lacking) are appended in turn, so targeted prompts ask for it.
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}: valid values are {', '.join(DOMAINS)}")
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}: valid values are {', '.join(TASK_TYPES)}")
    vocab = vocabulary()
    if n < 0 or n > vocab.capacity(domain, task_type):
        raise ValueError(
            f"n={n} prompts requested for ({domain}, {task_type}): the generator can make 0 to "
            f"{vocab.capacity(domain, task_type)} distinct ones"
        )
    cell = vocab.domains[domain]
    templates = vocab.templates[task_type]
    rng = random.Random(f"{seed}\x1f{domain}\x1f{task_type}")
    # Sample distinct combination indices without materializing the whole product.
    picks = rng.sample(range(vocab.capacity(domain, task_type)), n)
    n_aspects, n_templates = len(cell["aspects"]), len(templates)
    clean_hints = [h.strip().rstrip(".") for h in hints if h and h.strip()]
    out = []
    for i, index in enumerate(picks):
        topic_i, rest = divmod(index, n_aspects * n_templates)
        aspect_i, template_i = divmod(rest, n_templates)
        instruction = templates[template_i].format(topic=cell["topics"][topic_i], aspect=cell["aspects"][aspect_i])
        if clean_hints:
            instruction += f" Make sure to address: {clean_hints[i % len(clean_hints)]}."
        out.append(
            {
                "domain": domain,
                "task_type": task_type,
                "instruction": instruction,
                "context": None,
                "locator": f"generator:v{vocab.version}:{domain}/{task_type}/seed={seed}/{i}",
            }
        )
    return out
