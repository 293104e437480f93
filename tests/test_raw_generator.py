"""The seeded prompt generator the feedback loop calls."""

from __future__ import annotations

import pytest

from nexa_assets.raw.generator import generate_prompts, vocabulary
from nexa_assets.raw.ingest import GenerationRequest, ingest
from nexa_assets.raw.validate import ValidationRules
from nexa_assets.taxonomy import DOMAINS, TASK_TYPES


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
