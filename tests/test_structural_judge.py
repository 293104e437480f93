"""The rubric file, the judge prompt and its parser, and the offline structural judge."""

from __future__ import annotations

import json
import re

import pytest

from nexa_core.rubric import (
    JudgeVerdict,
    format_judge_messages,
    load_rubric,
    parse_judge_answer,
)
from nexa_core.structural_judge import METRICS, judge_structural, repetition, topic_overlap
from nexa_core.taxonomy import TASK_TYPES
from test_distill_filters import GOOD_HYPOTHESIS, GOOD_HYPOTHESIS_MARKDOWN, GOOD_METHODOLOGY

HYPOTHESIS_INSTRUCTION = (
    "Propose testable hypotheses for how elevated temperature affects the growth of Escherichia coli in minimal medium."
)
METHODOLOGY_INSTRUCTION = (
    "Design an experiment to measure how calcination temperature changes the photocatalytic activity of TiO2 nanoparticles."
)

WEAK_HYPOTHESIS = """Temperature is very important for bacteria such as Escherichia coli.

1. Temperature affects the growth of bacteria.
2. Heat plays a role in how bacteria live in minimal medium.

It has been well established that studies have shown temperature matters (Smith et al., 2019)."""

WEAK_METHODOLOGY = """To study calcination temperature and photocatalytic activity of TiO2 nanoparticles, heat the powder at
different temperatures, then put it in dye under light and see what happens. Nanoparticles calcined at higher
temperature are probably better."""

TRUNCATED_PROSE = (
    "Elevated temperature is a factor that bacteria respond to in many ways, and the growth of Escherichia coli "
    "depends on it, because the enzymes and membranes of the cell are affected by"
)

RUBRIC = load_rubric()
SCORES = {m: 4 for m in RUBRIC.metrics}


# --- rubric -------------------------------------------------------------------------------------------


def test_rubric_loads_with_the_design_metrics_and_scale():
    assert RUBRIC.metrics == ("correctness", "methodology", "specificity", "clarity", "hallucination_safety")
    assert RUBRIC.metrics == METRICS
    assert RUBRIC.scale == (1, 5)
    for metric in RUBRIC.metrics:
        assert set(RUBRIC.descriptions[metric]) == {"question", "1", "3", "5"}
        assert metric in RUBRIC.system_prompt
        assert RUBRIC.descriptions[metric]["5"] in RUBRIC.system_prompt
    assert '"scores": {"correctness": <1-5>' in RUBRIC.system_prompt
    assert "{rubric}" not in RUBRIC.system_prompt and "{scale_min}" not in RUBRIC.system_prompt


def test_rubric_version_is_the_file_version_plus_a_stable_content_hash():
    assert re.fullmatch(r"v2-[0-9a-f]{12}", RUBRIC.version)
    load_rubric.cache_clear()
    assert load_rubric("rubric_v2").version == RUBRIC.version
    # judge v1's rubric stays loadable, with its own version, so old scores never pass for new ones
    assert re.fullmatch(r"v1-[0-9a-f]{12}", load_rubric("rubric_v1").version)


def test_unknown_rubric_lists_the_valid_ones():
    with pytest.raises(ValueError, match="rubric_v1, rubric_v2"):
        load_rubric("rubric_v9")


def test_judge_prompt_contains_the_task_instruction_and_answer():
    answer = "1. A {placeholder} stays {answer} as written."
    system, user = format_judge_messages(RUBRIC, "hypothesis", HYPOTHESIS_INSTRUCTION, None, answer)
    assert system == {"role": "system", "content": RUBRIC.system_prompt}
    assert user["role"] == "user"
    assert HYPOTHESIS_INSTRUCTION in user["content"]
    assert answer in user["content"]
    assert "hypothesis" in user["content"] and "(none)" in user["content"]
    _, with_context = format_judge_messages(RUBRIC, "methodology", "Design it.", "A passage about {context}.", "x")
    assert "A passage about {context}." in with_context["content"]
    with pytest.raises(ValueError) as error:
        format_judge_messages(RUBRIC, "essay", "x", None, "y")
    assert all(t in str(error.value) for t in TASK_TYPES)


# --- parsing a judge's answer ----------------------------------------------------------------------------


def test_parse_accepts_fenced_json_after_prose():
    reply = (
        "Sure! Here is my grading of the {answer}:\n```json\n"
        + json.dumps({"scores": {**SCORES, "clarity": 2}, "lacking": {"clarity": "  a numbered\n structure ", "other": "x"}})
        + "\n```\nHope this helps."
    )
    scores, lacking, error = parse_judge_answer(RUBRIC, reply)
    assert error is None
    assert scores == {**SCORES, "clarity": 2}
    assert lacking == {"clarity": "a numbered structure"}


def test_parse_accepts_a_flat_object_and_integral_numbers():
    scores, lacking, error = parse_judge_answer(RUBRIC, json.dumps({**SCORES, "correctness": 5.0, "clarity": "3"}))
    assert error is None and lacking == {}
    assert scores == {**SCORES, "correctness": 5, "clarity": 3}


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (json.dumps({"scores": {m: 4 for m in METRICS[:-1]}}), "missing score for 'hallucination_safety'"),
        (json.dumps({"scores": {**SCORES, "clarity": 0}}), "'clarity' is 0, outside 1-5"),
        (json.dumps({"scores": {**SCORES, "specificity": 6}}), "'specificity' is 6, outside 1-5"),
        (json.dumps({"scores": {**SCORES, "methodology": 3.5}}), "'methodology' is not an integer"),
        (json.dumps({"scores": {**SCORES, "methodology": "good"}}), "'methodology' is not an integer"),
        (json.dumps({"scores": {**SCORES, "clarity": True}}), "'clarity' is not an integer"),
        (json.dumps({"scores": [4, 4, 4, 4, 4]}), "'scores' is a list"),
        ("The answer is good, I would give it a 4 overall.", "no JSON object"),
        ("{'scores': {'correctness': 4}}", "no JSON object"),
        ("", "no JSON object"),
        (None, "no JSON object"),
    ],
)
def test_parse_rejects_bad_answers_as_unparsable_never_zero(reply, why):
    scores, lacking, error = parse_judge_answer(RUBRIC, reply)
    assert scores is None and lacking == {}
    assert error is not None and error.startswith("judge_unparsable: ") and why in error


def test_verdict_from_a_parsed_answer():
    verdict = JudgeVerdict(*parse_judge_answer(RUBRIC, "no json"))
    assert not verdict.ok and verdict.error.startswith("judge_unparsable")


# --- the structural judge ------------------------------------------------------------------------------


def judge(task_type: str, answer: str | None, finish_reason: str | None = "stop") -> JudgeVerdict:
    instruction = HYPOTHESIS_INSTRUCTION if task_type == "hypothesis" else METHODOLOGY_INSTRUCTION
    return judge_structural(task_type, instruction, None, answer, finish_reason)


@pytest.mark.parametrize(
    ("task_type", "answer"),
    [("hypothesis", GOOD_HYPOTHESIS), ("methodology", GOOD_METHODOLOGY)],
)
def test_a_good_complete_answer_scores_at_least_4_everywhere(task_type, answer):
    verdict = judge(task_type, answer)
    assert verdict.error is None and verdict.lacking == {}
    assert set(verdict.scores) == set(METRICS)
    assert min(verdict.scores.values()) >= 4, verdict.scores


def test_markdown_hypotheses_score_well_too():
    instruction = "Propose hypotheses for what controls the photocatalytic activity of nitrogen-doped TiO2."
    verdict = judge_structural("hypothesis", instruction, None, GOOD_HYPOTHESIS_MARKDOWN)
    assert min(verdict.scores.values()) >= 4, (verdict.scores, verdict.lacking)


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_an_empty_answer_scores_1_with_a_hint_and_no_error(task_type):
    for answer in (None, "", "  \n"):
        verdict = judge(task_type, answer)
        assert verdict.error is None
        assert verdict.scores == {m: 1 for m in METRICS}
        assert set(verdict.lacking) == set(METRICS)


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_truncated_structureless_prose_scores_at_most_2_on_most_metrics(task_type):
    verdict = judge(task_type, TRUNCATED_PROSE, "length")
    low = [m for m, s in verdict.scores.items() if s <= 2]
    assert len(low) >= 4, verdict.scores
    assert "cut off" in verdict.lacking["clarity"]
    assert "cut off" in verdict.lacking["correctness"]


def test_good_hypotheses_rank_above_weak_ones_and_the_hints_say_why():
    good, weak = judge("hypothesis", GOOD_HYPOTHESIS), judge("hypothesis", WEAK_HYPOTHESIS)
    for metric in ("methodology", "specificity", "hallucination_safety"):
        assert good.scores[metric] > weak.scores[metric], metric
        assert weak.scores[metric] < 4
    assert all(good.scores[m] >= weak.scores[m] for m in METRICS)
    assert "a measurable outcome for each hypothesis" in weak.lacking["methodology"]
    assert "quantities with units" in weak.lacking["specificity"]
    assert "invented citations" in weak.lacking["hallucination_safety"]
    assert "unnamed studies" in weak.lacking["hallucination_safety"]


def test_good_protocol_ranks_above_a_weak_one_and_the_hints_say_why():
    good, weak = judge("methodology", GOOD_METHODOLOGY), judge("methodology", WEAK_METHODOLOGY)
    for metric in ("correctness", "methodology", "specificity", "clarity"):
        assert good.scores[metric] > weak.scores[metric], metric
    hints = weak.lacking["methodology"]
    assert "ordered, numbered steps" in hints and "a control condition" in hints and "a readout" in hints
    assert "quantities with units" in weak.lacking["specificity"]
    assert "numbered structure" in weak.lacking["clarity"]


def test_each_missing_protocol_part_is_named():
    without_control = (
        GOOD_METHODOLOGY.replace(
            "; keep one uncalcined batch as the baseline and use commercial P25 as a reference sample", ""
        ).replace("; run a dye-only control without catalyst and a dark control with catalyst", "")
    )
    verdict = judge("methodology", without_control)
    assert verdict.scores["methodology"] < 4
    assert verdict.lacking["methodology"] == "a control condition"
    no_units = re.sub(r"\d+(?:\.\d+)?\s*(?:°C/min|°C|h|min|mg/L|mg|mL|W|nm)\b", "some", GOOD_METHODOLOGY)
    unitless = judge("methodology", no_units)
    assert unitless.scores["specificity"] < 4
    assert "quantities with units" in unitless.lacking["specificity"]


def test_truncation_lowers_clarity_and_correctness_of_a_good_answer():
    full, cut = judge("hypothesis", GOOD_HYPOTHESIS), judge("hypothesis", GOOD_HYPOTHESIS, "length")
    assert cut.scores["clarity"] < full.scores["clarity"]
    assert cut.scores["correctness"] < full.scores["correctness"]


def test_off_topic_answer_loses_correctness():
    on = judge("methodology", GOOD_METHODOLOGY)
    off = judge_structural("methodology", "Design a study of sleep deprivation in zebrafish larvae.", None, GOOD_METHODOLOGY)
    assert off.scores["correctness"] < on.scores["correctness"]
    assert "topic" in off.lacking["correctness"]
    assert topic_overlap(METHODOLOGY_INSTRUCTION, GOOD_METHODOLOGY) >= 0.5


def test_refusal_and_repetition_are_penalized():
    refusal = judge("hypothesis", "I'm sorry, but as an AI I cannot propose hypotheses about bacteria.")
    assert refusal.scores["correctness"] == 1 and "refusal" in refusal.lacking["correctness"]
    looping = "1. Heat increases the growth rate of E. coli by 20%.\n" + "The growth rate of bacteria is important. " * 8
    assert repetition(looping) > 0.5
    assert "no repeated sentences" in judge("hypothesis", looping).lacking["clarity"]


def test_structural_judge_is_deterministic_and_checks_task_type():
    assert judge("hypothesis", WEAK_HYPOTHESIS) == judge("hypothesis", WEAK_HYPOTHESIS)
    with pytest.raises(ValueError) as error:
        judge_structural("poem", "x", None, "y")
    assert all(t in str(error.value) for t in TASK_TYPES)
