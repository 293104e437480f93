"""The teacher's prompt templates: versioned files whose content hash is the version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from nexa_core.text import content_hash

TEMPLATE_NAMES: tuple[str, ...] = (
    "system", "hypothesis", "methodology", "regeneration", "example_hypothesis", "example_methodology"
)


@dataclass(frozen=True)
class Templates:
    texts: Mapping[str, str]
    version: str


@cache
def templates() -> Templates:
    """The prompt templates (nexa_core/data/templates/*.txt) and their content-hash version."""
    folder = resources.files("nexa_core").joinpath("data", "templates")
    texts = {name: folder.joinpath(f"{name}.txt").read_text(encoding="utf-8").strip() for name in TEMPLATE_NAMES}
    version = "t-" + content_hash(*(f"{name}\x1e{texts[name]}" for name in TEMPLATE_NAMES))[:12]
    return Templates(texts=texts, version=version)
