"""The seeded prompt generator the feedback loop calls."""

from __future__ import annotations

import polars as pl
import pytest

from nexa_resources.tables.feedback import REQUEST_SCHEMA
from nexa_assets.raw.feedback import fulfil_requests
from nexa_assets.raw.generator import generate_prompts, vocabulary
from nexa_assets.raw.ingest import GenerationRequest, ingest
from nexa_assets.raw.validate import ValidationRules, prompt_id
from nexa_assets.sft.package import EvalIndex, ngrams
from nexa_core.taxonomy import DOMAINS, TASK_TYPES


def test_same_seed_same_prompts_other_seed_other_prompts():
    a = generate_prompts("physics", "methodology", 20, seed=1)
    assert a == generate_prompts("physics", "methodology", 20, seed=1)
    b = generate_prompts("physics", "methodology", 20, seed=2)
    assert [r["instruction"] for r in a] != [r["instruction"] for r in b]


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_n_distinct_prompts_for_every_cell(domain, task_type):
    rows = generate_prompts(domain, task_type, 50, seed=7)
    assert len({r["instruction"] for r in rows}) == 50
    assert all(r["domain"] == domain and r["task_type"] == task_type for r in rows)
    assert all("{" not in r["instruction"] for r in rows)


def test_hints_are_woven_into_instructions():
    rows = generate_prompts("biology", "hypothesis", 4, seed=3, hints=["a measurable outcome", "controls."])
    assert "a measurable outcome" in rows[0]["instruction"]
    assert rows[1]["instruction"].endswith("Make sure to address: controls.")


def test_invalid_requests_name_the_valid_values():
    with pytest.raises(ValueError, match="biology, chemistry, materials, physics"):
        generate_prompts("astronomy", "hypothesis", 1)
    with pytest.raises(ValueError, match="hypothesis, methodology"):
        generate_prompts("physics", "essay", 1)
    cap = vocabulary().capacity("physics", "hypothesis")
    with pytest.raises(ValueError, match=f"0 to {cap}"):
        generate_prompts("physics", "hypothesis", cap + 1)


def test_generated_prompts_validate_and_are_always_train():
    requests = [GenerationRequest(d, t, 10, seed=0, origin="feedback") for d in DOMAINS for t in TASK_TYPES]
    result = ingest(rules=ValidationRules(), include_seed_pack=False, generation=requests)
    assert result.rejects.is_empty()
    assert result.prompts.height == 80
    assert set(result.prompts["split"]) == {"train"}
    assert set(result.prompts["origin"]) == {"feedback"}


def test_templates_make_no_near_copy_of_a_seed_prompt():
    """Every prompt the generator can make (full capacity of all 8 cells, the pool generated and feedback
    prompts come from) shares no 7-word run with any seed prompt, far below the 12-word run sft/examples
    refuses, is equal to none, and is far from every eval prompt of its cell (word 3-gram Jaccard)."""
    seed = ingest(rules=ValidationRules()).prompts
    runs: set[tuple[str, ...]] = set()
    for row in seed.iter_rows(named=True):
        runs |= ngrams(row["instruction"], 7) | ngrams(row["context"], 7)
    held_out = EvalIndex.build(seed.filter(pl.col("split") == "eval").iter_rows(named=True), 12)
    eval_grams: dict[tuple[str, str], list[set[tuple[str, ...]]]] = {}
    for row in seed.filter(pl.col("split") == "eval").iter_rows(named=True):
        eval_grams.setdefault((row["domain"], row["task_type"]), []).append(ngrams(row["instruction"], 3))
    seed_ids = set(seed["prompt_id"])
    made = 0
    for domain in DOMAINS:
        for task_type in TASK_TYPES:
            for row in generate_prompts(domain, task_type, vocabulary().capacity(domain, task_type), seed=0):
                text, made = row["instruction"], made + 1
                assert prompt_id(domain, task_type, text, None) not in seed_ids, text
                assert not ngrams(text, 7) & runs, text
                assert held_out.contaminated(text) is None, text
                grams = ngrams(text, 3)
                assert max(len(grams & e) / len(grams | e) for e in eval_grams[(domain, task_type)]) < 0.4, text
    assert made == sum(vocabulary().capacity(d, t) for d in DOMAINS for t in TASK_TYPES)


def test_feedback_prompts_never_carry_an_eval_prompt_in_their_hints():
    seed = ingest(rules=ValidationRules()).prompts
    eval_rows = seed.filter(pl.col("split") == "eval")
    quoted = next(r for r in eval_rows.iter_rows(named=True) if len(r["instruction"].split()) >= 16)
    leak = " ".join(quoted["instruction"].split()[:14])  # a judge's note quoting the eval prompt
    request = pl.DataFrame(
        [
            {
                "domain": "physics", "task_type": "methodology", "for_round": 1, "n_prompts": 4, "gap": 2.0,
                "metrics": ["clarity"], "hints": [leak, "state the control explicitly"], "status": "open",
                "fulfilled_by": None, "prompt_ids": [],
            }
        ],
        schema=REQUEST_SCHEMA,
    )
    held_out = EvalIndex.build(eval_rows.iter_rows(named=True), 12)
    existing = dict(zip(seed["prompt_id"], seed["locator"]))
    unguarded = fulfil_requests(request, existing, run_id="r0")
    assert any(leak in text for text in unguarded.prompts["instruction"])  # what the guard is for
    fed = fulfil_requests(request, existing, run_id="r1", held_out=held_out)
    assert fed.prompts.height == 4 and set(fed.prompts["split"]) == {"train"}
    assert all(held_out.contaminated(r["instruction"], r["context"]) is None for r in fed.prompts.iter_rows(named=True))
    assert all("state the control explicitly" in text for text in fed.prompts["instruction"])
