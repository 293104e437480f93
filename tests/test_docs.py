"""The README and docs: the README's loop diagram is the Definitions' graph, it stays short, and every relative link
in README.md, bench/README.md and docs/*.md resolves (the file, and the heading an anchor names)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nexa_jobs import graph
from nexa_jobs.definitions import defs

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in found:
            n += 1
            anchor = f"{slug}-{n}"
        found.add(anchor)
    return found


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [url for url in LINK.findall(text) if not re.match(r"[a-z]+:", url)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for url in relative_links(page):
        path, _, anchor = url.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{url}: no file {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{url}: no heading #{anchor} in {target.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_the_readme_loop_is_the_definitions_graph_and_the_readme_stays_short():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert graph.with_diagram(readme, graph.mermaid(defs)) == readme, "run: python -m nexa_jobs.graph --write README.md"
    assert len(readme.splitlines()) <= 150
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        assert f'["{key.to_user_string()}"]' in readme
