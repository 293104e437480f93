"""Quality filters for teacher completions: each reason fires on a crafted answer and never on a good one."""

from __future__ import annotations

import random

import pytest

from nexa_core.filters import (
    REASON_CODES,
    FilterConfig,
    apply_filters,
    check_completion,
    find_citations,
    find_quantities,
    is_refusal,
    near_duplicate_indices,
    parse_hypotheses,
    parse_steps,
)
from nexa_core.taxonomy import TASK_TYPES

CONFIG = FilterConfig()

# SmolLM2-style: a sentence, then "1. ...\n2. ...".
GOOD_HYPOTHESIS = """Here are three testable hypotheses about how temperature affects the growth of Escherichia coli in minimal medium.

1. Raising the incubation temperature from 30 °C to 37 °C will increase the exponential growth rate of E. coli in M9 glucose medium by at least 20%, measured as the doubling time from optical density at 600 nm.
2. Above 42 °C, heat-shock protein expression (DnaK, GroEL) will rise at least 5-fold within 30 min, and cells lacking the rpoH gene will grow more slowly than wild-type cells at that temperature.
3. At 44 °C the fraction of viable cells will decrease over 6 h, so we would observe fewer colony-forming units per mL in plate counts than in cultures kept at 37 °C.

Each prediction can be tested with three biological replicates per temperature."""

GOOD_HYPOTHESIS_MARKDOWN = """### Hypotheses

**Hypothesis 1:** Nitrogen doping narrows the band gap of TiO2.
Prediction: the absorption edge shifts by at least 30 nm toward longer wavelengths, measured by diffuse reflectance UV-Vis.

**Hypothesis 2:** A larger specific surface area makes the catalyst more active.
Prediction: the methylene blue degradation rate constant correlates positively with BET surface area (m²/g).
"""

GOOD_HYPOTHESIS_BULLETS = """Two hypotheses on salt-stress priming in Arabidopsis thaliana:
- Plants pre-exposed to 50 mM NaCl for 3 days will show higher survival than naive plants after transfer to 150 mM NaCl.
- Pre-exposure will increase the proline concentration in leaves by at least 2-fold, measured by a ninhydrin assay after 24 h."""

GOOD_METHODOLOGY = """Protocol to test how calcination temperature affects the photocatalytic activity of TiO2 nanoparticles:

1. Synthesize TiO2 nanoparticles by sol-gel hydrolysis of titanium isopropoxide, dry at 80 °C for 12 h, and split the powder into five batches.
2. Calcine four batches at 400, 500, 600 and 700 °C for 2 h in air (ramp 5 °C/min); keep one uncalcined batch as the baseline and use commercial P25 as a reference sample.
3. Characterize each batch by X-ray diffraction (anatase/rutile ratio) and BET surface area.
4. Disperse 50 mg of each catalyst in 100 mL of 10 mg/L methylene blue, stir in the dark for 30 min, then irradiate under a 300 W xenon lamp; run a dye-only control without catalyst and a dark control with catalyst.
5. Record the dye concentration by UV-Vis absorbance at 664 nm every 15 min for 2 h, fit the pseudo-first-order rate constant, and compare temperatures with a one-way ANOVA over three independent replicates."""

GOOD = {
    "numbered": (GOOD_HYPOTHESIS, "hypothesis"),
    "markdown": (GOOD_HYPOTHESIS_MARKDOWN, "hypothesis"),
    "bullets": (GOOD_HYPOTHESIS_BULLETS, "hypothesis"),
    "methodology": (GOOD_METHODOLOGY, "methodology"),
}


def reasons(completion: str | None, task_type: str = "hypothesis", finish_reason: str | None = "stop", tokens: int | None = 200) -> list[str]:
    return check_completion(completion, task_type, finish_reason, tokens, CONFIG)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_completions_pass_every_filter(name):
    completion, task_type = GOOD[name]
    assert reasons(completion, task_type) == []


def test_good_hypotheses_are_parsed_from_numbers_markdown_and_bullets():
    assert len(parse_hypotheses(GOOD_HYPOTHESIS)) == 3
    markdown = parse_hypotheses(GOOD_HYPOTHESIS_MARKDOWN)
    assert [h.split(".")[0] for h in markdown] == [
        "Nitrogen doping narrows the band gap of TiO2",
        "A larger specific surface area makes the catalyst more active",
    ]
    assert "Prediction: the absorption edge shifts" in markdown[0]  # the label's paragraph belongs to it
    assert len(parse_hypotheses(GOOD_HYPOTHESIS_BULLETS)) == 2
    assert len(parse_steps(GOOD_METHODOLOGY)) == 5


def test_parsers_handle_labels_restarts_and_nesting():
    labelled = "H1: Light increases the rate.\nH2: Shade lowers the yield.\n\n**Test plan**\n1. Grow plants.\n2. Measure."
    assert parse_hypotheses(labelled) == ["Light increases the rate.", "Shade lowers the yield."]
    background_first = (
        "Background:\n1. Enzymes denature when heated.\n2. Rates follow Arrhenius kinetics.\n\n"
        "Hypotheses:\n1. Activity will peak near 37 °C.\n2. Activity will drop by half at 50 °C.\n"
        "3. A thermostable mutant will keep higher activity at 60 °C."
    )
    assert [h.split()[0] for h in parse_hypotheses(background_first)] == ["Activity", "Activity", "A"]
    nested = "1. Hypothesis: Drought lowers stomatal conductance.\n   - measured with a porometer\n2. Hypothesis: ABA levels rise."
    assert parse_hypotheses(nested) == [
        "Drought lowers stomatal conductance. - measured with a porometer",
        "ABA levels rise.",
    ]
    steps = "**Step 1:** Prepare 1.5 mM stock.\n**Step 2:** Dilute.\n\nStep 3 - Measure absorbance."
    assert parse_steps(steps) == ["Prepare 1.5 mM stock.", "Dilute.", "Measure absorbance."]
    assert len(parse_steps("1) Mix.\n2) Heat.\n3) Cool.")) == 3
    assert len(parse_steps("1. Mix.\n1. Heat.\n1. Cool.")) == 3  # lazy Markdown numbering
    longest_run = "Materials:\n1. Buffer\n2. Enzyme\n\nProcedure:\n1. Mix.\n2. Incubate.\n3. Read.\n4. Repeat with a blank."
    assert parse_steps(longest_run)[0] == "Mix."
    assert parse_hypotheses("No list here, just prose about 1.5 mM salt.") == []


def test_empty_completion_gets_only_empty():
    assert reasons(None) == ["empty"]
    assert reasons("   \n ") == ["empty"]
    assert reasons("", finish_reason="length") == ["empty", "truncated"]


# Each case changes a good answer so that exactly the named reason applies.
def _without_control(text: str) -> str:
    return (
        text.replace("; keep one uncalcined batch as the baseline and use commercial P25 as a reference sample", "")
        .replace("; run a dye-only control without catalyst and a dark control with catalyst", "")
    )


WITHOUT_READOUT = """Protocol to compare TiO2 calcined at different temperatures:

1. Prepare TiO2 powder by sol-gel hydrolysis of titanium isopropoxide and dry at 80 °C for 12 h.
2. Calcine batches at 400, 500, 600 and 700 °C for 2 h; keep an uncalcined batch as the control.
3. Disperse 50 mg of each powder in 100 mL of dye solution and irradiate under a 300 W lamp.
4. Repeat the irradiation three times for every batch."""

SINGLE_CASES = {
    "too_short": ("1. Heat will increase the rate by 10%.\n2. Cold will lower the yield.", "hypothesis", "stop", 40),
    "too_long": (GOOD_METHODOLOGY + "\n\n" + "Note on safety and waste handling. " * 180, "methodology", "stop", 1400),
    "too_few_tokens": (GOOD_HYPOTHESIS, "hypothesis", "stop", 12),
    "too_many_tokens": (GOOD_HYPOTHESIS, "hypothesis", "stop", 1600),
    "truncated": (GOOD_HYPOTHESIS, "hypothesis", "length", 200),
    "refusal": (
        "I'm sorry, but I cannot help with designing this experiment. "
        + GOOD_METHODOLOGY.split("\n", 1)[1],
        "methodology",
        "stop",
        200,
    ),
    "invented_citation": (GOOD_HYPOTHESIS + " This agrees with earlier work [1].", "hypothesis", "stop", 200),
    "missing_hypotheses": (
        "We propose one hypothesis.\n\n1. Raising the temperature from 30 °C to 37 °C will increase the growth "
        "rate of E. coli by 20%, measured as optical density at 600 nm.",
        "hypothesis",
        "stop",
        60,
    ),
    "hypothesis_without_outcome": (
        GOOD_HYPOTHESIS.replace(
            "At 44 °C the fraction of viable cells will decrease over 6 h, so we would observe fewer colony-forming "
            "units per mL in plate counts than in cultures kept at 37 °C.",
            "Heat also plays an important role in how the bacteria live in their natural environment.",
        ),
        "hypothesis",
        "stop",
        200,
    ),
    "too_few_steps": (
        GOOD_METHODOLOGY.split("\n3.")[0] + " Then measure the absorbance at 664 nm.",
        "methodology",
        "stop",
        200,
    ),
    "missing_control": (_without_control(GOOD_METHODOLOGY), "methodology", "stop", 200),
    "missing_readout": (WITHOUT_READOUT, "methodology", "stop", 200),
}


@pytest.mark.parametrize("reason", sorted(SINGLE_CASES))
def test_each_reason_fires_alone_on_its_crafted_completion(reason):
    completion, task_type, finish_reason, tokens = SINGLE_CASES[reason]
    assert reasons(completion, task_type, finish_reason, tokens) == [reason]


def test_every_reason_a_check_can_give_is_listed():
    assert set(SINGLE_CASES) | {"empty", "near_duplicate"} == set(REASON_CODES)


def test_a_bad_completion_gets_all_its_reasons():
    got = reasons("As an AI, I can't help with that [1].", "methodology", "length", 12)
    assert got == [
        "too_short",
        "too_few_tokens",
        "truncated",
        "refusal",
        "invented_citation",
        "too_few_steps",
        "missing_control",
        "missing_readout",
    ]


def test_token_count_is_estimated_when_the_server_gave_none():
    assert reasons(GOOD_HYPOTHESIS, tokens=None) == []
    assert "too_few_tokens" in reasons("1. Heat will raise the rate by 10%.\n2. Cold will lower it.", tokens=None)


@pytest.mark.parametrize(
    "text",
    [
        "as shown in [12]",
        "see [1, 3] and [4-6]",
        "doi: 10.1038/nature12373",
        "published as 10.1021/jacs.5b01234",
        "arXiv:2301.12345",
        "arxiv: 2105.00001v2",
        "Smith et al. (2019) showed",
        "as Zhang et al., 2021 reported",
        "(Jones, 2020)",
        "(Lee and Park 2018)",
    ],
)
def test_citation_patterns_are_found(text):
    assert find_citations(text)


@pytest.mark.parametrize(
    "text",
    ["array[1] holds", "a 1.5 mM solution at 37 °C", "in 2019 the price rose", "Hypothesis 1: H2O levels rise"],
)
def test_ordinary_text_has_no_citation(text):
    assert find_citations(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "I cannot provide that information.",
        "as an AI language model I do not run experiments",
        "**I'm sorry**, this is outside what I can do.",
        "Sorry, I can't help with lab protocols involving pathogens. " + "Please consult a biosafety officer. " * 3,
    ],
)
def test_refusals_are_detected(text):
    assert is_refusal(text)


def test_a_good_answer_that_mentions_sorry_late_is_no_refusal():
    assert not is_refusal(GOOD_METHODOLOGY + "\nIf the lamp fails I cannot guarantee a constant photon flux, so log it.")


def test_near_identical_hypotheses_count_once():
    twice = (
        "1. Raising the temperature to 37 °C will increase the growth rate of E. coli by 20%.\n"
        "2. Raising the temperature to 37 °C will increase the growth rate of E. coli by 20 %.\n"
    )
    assert len(parse_hypotheses(twice)) == 1
    assert "missing_hypotheses" in reasons(twice * 2, tokens=100)


def test_too_many_hypotheses():
    four = "\n".join(f"{i}. Dose {i} mM will increase the rate of enzyme {chr(64 + i)} by {10 * i}%." for i in range(1, 5))
    assert reasons(four, tokens=100) == ["missing_hypotheses"]


def test_quantities_ignore_list_markers_and_labels():
    assert find_quantities("1. A sample\n2. Step 3 Hypothesis 2") == []
    assert set(find_quantities("Heat to 37 °C for 24 h in 5 mM NaCl, 3-fold, 10 mg/mL, 20%")) == {
        "37 °C",
        "24 h",
        "5 mM",
        "3-fold",
        "10 mg/mL",
        "20%",
    }


def test_unknown_task_type_lists_valid_ones():
    with pytest.raises(ValueError) as error:
        reasons(GOOD_HYPOTHESIS, "summary")
    assert all(t in str(error.value) for t in TASK_TYPES)


def _paraphrase(text: str) -> str:
    return text.replace("Synthesize", "Prepare").replace("split the powder", "divide the powder").replace(
        "every 15 min", "every 10 min"
    )


def test_near_duplicates_detected_and_distinct_texts_not():
    texts = [GOOD_METHODOLOGY, GOOD_HYPOTHESIS, _paraphrase(GOOD_METHODOLOGY), GOOD_HYPOTHESIS_MARKDOWN]
    assert near_duplicate_indices(texts, 0.85) == {2: 0}
    assert near_duplicate_indices([GOOD_HYPOTHESIS, GOOD_HYPOTHESIS_BULLETS, GOOD_METHODOLOGY], 0.85) == {}
    assert near_duplicate_indices(["", "", "same words here", "SAME   words here."], 0.85) == {3: 2}


def test_near_duplicates_point_to_a_kept_text():
    chain = [GOOD_METHODOLOGY, GOOD_METHODOLOGY, _paraphrase(GOOD_METHODOLOGY)]
    assert near_duplicate_indices(chain, 0.85) == {1: 0, 2: 0}
    assert near_duplicate_indices(chain, 0.85, anchors=[False, True, True]) == {2: 1}
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate_indices(chain, 0.0)


def test_apply_filters_marks_later_copies_of_kept_rows_only():
    def row(completion: str | None, finish_reason: str = "stop") -> dict:
        return {"completion": completion, "task_type": "methodology", "finish_reason": finish_reason, "completion_tokens": 200}

    rows = [
        row(GOOD_METHODOLOGY, "length"),  # rejected: it must not knock out the good copy after it
        row(_paraphrase(GOOD_METHODOLOGY)),
        row(GOOD_METHODOLOGY),
        row(GOOD_METHODOLOGY, "length"),  # a bad copy of a kept row gets both reasons
        row(None),
        {"completion": GOOD_HYPOTHESIS, "task_type": "hypothesis", "finish_reason": "stop", "completion_tokens": 200},
    ]
    assert apply_filters(rows, CONFIG) == [
        ["truncated"],
        [],
        ["near_duplicate"],
        ["truncated", "near_duplicate"],
        ["empty"],
        [],
    ]


def test_near_duplicates_are_exact_without_comparing_all_pairs(monkeypatch):
    from nexa_core import filters

    compared = []
    exact = filters._jaccard
    monkeypatch.setattr(filters, "_jaccard", lambda a, b: compared.append(1) or exact(a, b))
    rng = random.Random(7)
    vocabulary = [f"w{i}" for i in range(400)]
    texts = [" ".join(rng.choice(vocabulary) for _ in range(120)) for _ in range(3000)]
    planted = {}
    for _ in range(40):
        source = rng.randrange(3000)
        words = texts[source].split()
        words[rng.randrange(len(words))] = "changed"
        planted[len(texts)] = source
        texts.append(" ".join(words))
    found = near_duplicate_indices(texts, 0.85)
    assert found == planted
    # LSH proposes only near candidates: about one exact comparison per planted copy, not 3,040² / 2.
    assert len(planted) <= len(compared) < 3 * len(planted)


def test_config_rejects_impossible_bounds():
    with pytest.raises(ValueError, match="min_hypotheses"):
        FilterConfig(min_hypotheses=4, max_hypotheses=3)
    with pytest.raises(ValueError, match="near_duplicate_threshold"):
        FilterConfig(near_duplicate_threshold=1.5)


def test_waived_reasons_do_not_reject_and_unknown_ones_are_refused():
    truncated_prose = "Ice may be slippery because a thin liquid layer forms at its surface under pressure " * 3
    strict = check_completion(truncated_prose, "hypothesis", "length", 60, FilterConfig())
    assert "truncated" in strict and "missing_hypotheses" in strict
    waived = FilterConfig(waive=frozenset({"truncated", "missing_hypotheses", "hypothesis_without_outcome"}))
    assert check_completion(truncated_prose, "hypothesis", "length", 60, waived) == []
    with pytest.raises(ValueError, match="valid values are too_short"):
        FilterConfig(waive=frozenset({"boring"}))
