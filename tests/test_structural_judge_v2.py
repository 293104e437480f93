"""Judge v2: answers that say nothing of their own about the prompt lose correctness (issue 12)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from statistics import mean

import polars as pl
import pytest

from nexa_core.filters import FilterConfig, parse_hypotheses
from nexa_assets.distill.pairs import GateConfig, evaluate_pairs
from nexa_core.templates import templates
from nexa_assets.evaluate.scoring import judge_per_model
from nexa_core.shared_answers import shared_prompt_counts
from nexa_core.structural_judge import distinct_items, judge_structural, judge_structural_batch
from test_distill_filters import GOOD_HYPOTHESIS, GOOD_METHODOLOGY
from test_structural_judge import HYPOTHESIS_INSTRUCTION, METHODOLOGY_INSTRUCTION

SEED_PACK = Path(__file__).resolve().parents[1] / "nexa_assets" / "raw" / "data" / "seed_pack.jsonl"
SEEDS = [json.loads(line) for line in SEED_PACK.read_text().splitlines() if line.strip()]

# The scripted test teacher's single fixed answer (v1 gave it correctness 4.73 over the seed pack).
FIXED = {
    "hypothesis": """Hypotheses for: {topic}
1. Increasing the treatment dose raises the response rate; measurable outcome: response rate (%) at day 14.
2. The effect is mediated by the target pathway; measurable outcome: pathway marker level (ng/mL) vs. baseline.
3. The effect persists after withdrawal; measurable outcome: response rate (%) 30 days after the last dose.""",
    "methodology": """Protocol for: {topic}
1. Randomise 40 samples into treatment and control groups (n=20 each), blinded to the analyst.
2. Apply the treatment to the treatment group; give the control group a matched vehicle.
3. Hold temperature, timing and handling identical across both groups for 14 days.
4. Record the readout: the primary outcome measured by a calibrated assay at day 14.
5. Compare groups with a two-sided t-test at alpha 0.05 and report effect size with 95% CI.""",
}


def _item(row: dict, answer: str) -> dict:
    return {**row, "answer": answer, "finish_reason": "stop"}


def _subject(instruction: str) -> str:
    return re.sub(r"(?i)^.*?\b(?:for why|about why|explaining why|for|about|to|why)\s+", "", instruction.rstrip(".?"), count=1)


def echo(row: dict) -> str:
    """Numbered items that restate the instruction, with boilerplate, units and replicates sprinkled in."""
    s = _subject(row["instruction"])
    if row["task_type"] == "hypothesis":
        return (
            f"1. {s}, with a control and n = 3 replicates at 37 °C. Prediction: the rate increases by 20%.\n"
            f"2. The reason is that {s}, measured at 10 mg/mL. Prediction: the level is 2-fold higher than control.\n"
            f"3. {s} because of the conditions (n = 5, p < 0.05). Prediction: a 30% decrease after 24 h."
        )
    return "\n".join(
        f"{n}. {verb} the {s}, with a vehicle control, n = 3 replicates, 25 °C and 10 mg/mL."
        for n, verb in enumerate(("Prepare", "Measure", "Quantify", "Record", "Compare"), 1)
    )


def test_a_fixed_answer_given_to_every_seed_prompt_has_mean_correctness_at_most_2_5():
    items = [_item(row, FIXED[row["task_type"]].format(topic=" ".join(row["instruction"].split()[:12]))) for row in SEEDS]
    verdicts = judge_structural_batch(items)
    assert len(verdicts) == 256
    assert mean(v.scores["correctness"] for v in verdicts) <= 2.5
    assert all("near-identical answers" in v.lacking["correctness"] for v in verdicts)


def test_instruction_echo_answers_have_mean_correctness_at_most_2_5_even_one_at_a_time():
    alone = [judge_structural(r["task_type"], r["instruction"], r["context"], echo(r)) for r in SEEDS]
    assert mean(v.scores["correctness"] for v in alone) <= 2.5
    assert sum("beyond the instruction's own words" in v.lacking.get("correctness", "") for v in alone) >= 0.9 * len(SEEDS)
    batch = judge_structural_batch([_item(r, echo(r)) for r in SEEDS])
    assert mean(v.scores["correctness"] for v in batch) <= 2.5


def test_good_answers_keep_their_scores_in_a_batch_and_best_of_n_samples_are_not_penalized():
    rows = [
        {"task_type": "hypothesis", "instruction": HYPOTHESIS_INSTRUCTION, "context": None},
        {"task_type": "methodology", "instruction": METHODOLOGY_INSTRUCTION, "context": None},
    ]
    answers = [GOOD_HYPOTHESIS, GOOD_METHODOLOGY]
    # two samples of each prompt, near-identical to each other: one prompt, so no answer is "reused"
    items = [_item(r, a) for r, a in zip(rows, answers)] * 2
    verdicts = judge_structural_batch(items)
    alone = [judge_structural(r["task_type"], r["instruction"], None, a) for r, a in zip(rows, answers)]
    assert verdicts == alone * 2
    assert all(min(v.scores.values()) >= 4 for v in verdicts)


def test_an_answer_reused_for_another_prompt_loses_correctness_also_against_the_corpus():
    a = {"task_type": "methodology", "instruction": METHODOLOGY_INSTRUCTION, "context": None}
    b = {"task_type": "methodology", "instruction": "Design an experiment to measure sleep in zebrafish larvae.", "context": None}
    alone = judge_structural_batch([_item(a, GOOD_METHODOLOGY)])[0]
    later = judge_structural_batch([_item(a, GOOD_METHODOLOGY)], corpus=[_item(b, GOOD_METHODOLOGY)])[0]
    assert later.scores["correctness"] <= alone.scores["correctness"] - 3
    assert "1 other prompts" in later.lacking["correctness"]
    # a design that does not address its own prompt cannot score high on methodology either
    assert later.scores["methodology"] <= later.scores["correctness"] + 1
    assert shared_prompt_counts([_item(a, GOOD_METHODOLOGY), _item(b, GOOD_HYPOTHESIS)]) == [0, 0]


def test_the_worked_example_copied_into_another_prompt_loses_correctness():
    example = templates().texts["example_methodology"].partition("\n---\n")[2]
    instruction = "Design a field study to quantify how habitat fragmentation affects pollinator visitation rates."
    copied = judge_structural("methodology", instruction, None, example)
    assert copied.scores["correctness"] <= 2
    assert "worked example" in copied.lacking["correctness"]
    hypothesis_example = templates().texts["example_hypothesis"].partition("\n---\n")[2]
    assert judge_structural("hypothesis", HYPOTHESIS_INSTRUCTION, None, hypothesis_example).scores["correctness"] <= 2


def test_an_unused_context_passage_loses_correctness():
    instruction = "Propose hypotheses explaining the kinetic anomaly described."
    context = (
        "The rate of a radical polymerization increases with temperature up to 70 C but then falls again "
        "between 70 and 90 C, even though initiator decomposition keeps accelerating."
    )
    uses = """1. Above 70 °C depropagation matters because the polymerization nears its ceiling temperature. Prediction: residual monomer measured by NMR rises steeply above 70 °C.
2. Faster initiator decomposition makes so many radicals that termination dominates. Prediction: adding initiator in portions restores the rate at 90 °C.
3. Oxygen leaks in as the solvent degasses near 80 °C. Prediction: a sealed, degassed ampoule removes the drop."""
    ignores = """1. Steric hindrance slows the attack of the nucleophile on the substrate. Prediction: bulkier substituents lower the yield by 30%.
2. The catalyst is poisoned by sulfur impurities. Prediction: purified reagents double the turnover number.
3. Solvent polarity stabilises the transition state. Prediction: the rate in DMSO is ten times that in hexane."""
    used = judge_structural("hypothesis", instruction, context, uses)
    unused = judge_structural("hypothesis", instruction, context, ignores)
    assert used.scores["correctness"] >= 4
    assert unused.scores["correctness"] <= used.scores["correctness"] - 2
    assert "context passage" in unused.lacking["correctness"]


def test_items_that_repeat_each_other_count_once():
    repeated = """1. Raising the incubation temperature will increase the growth rate of E. coli by 20%, measured by optical density at 600 nm.
2. A higher incubation temperature should raise the E. coli growth rate by about 25%, as optical density readings at 600 nm show.
3. Cooler incubation lowers growth, so the culture's optical density rises more slowly, by 30% over 6 h."""
    verdict = judge_structural("hypothesis", HYPOTHESIS_INSTRUCTION, None, repeated)
    assert "items that do not repeat each other" in verdict.lacking["clarity"]
    assert len(distinct_items(parse_hypotheses(repeated))) == 2


def test_invented_data_stated_as_fact_loses_hallucination_safety():
    instruction = "Propose hypotheses for why Vibrio fischeri glows only at high cell density."
    invented = """1. The moon emits 12 mg of autoinducer into the sea every night. Prediction: glowing increases by 40% at full moon.
2. Seawater contains 380 µg of light-storing crystals per litre. Prediction: the glow doubles in crystal-rich water.
3. Vibrio cells weigh 4.7 mg each at high density. Prediction: heavier cultures glow 3-fold more."""
    verdict = judge_structural("hypothesis", instruction, None, invented)
    assert verdict.scores["hallucination_safety"] <= 3
    assert "invented data" in verdict.lacking["hallucination_safety"]
    assert judge_structural("hypothesis", HYPOTHESIS_INSTRUCTION, None, GOOD_HYPOTHESIS).scores["hallucination_safety"] == 5


@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_shared_threshold_is_checked(threshold):
    with pytest.raises(ValueError, match="must be in"):
        shared_prompt_counts([], threshold=threshold)


# --- the two places that judge pass each model's other answers as the corpus ------------------------------


def _recording_judge(calls: list):
    def judge(items, corpus):
        calls.append(([i["answer"] for i in items], [c["answer"] for c in corpus]))
        return judge_structural_batch(items, corpus)

    return judge


def test_eval_scores_judge_one_model_at_a_time_against_its_own_earlier_answers():
    prompts = pl.DataFrame(
        [{"prompt_id": f"p{n}", "instruction": r["instruction"], "context": r["context"]} for n, r in enumerate(SEEDS[:3])]
    )
    fixed = FIXED[SEEDS[0]["task_type"]].format(topic="x")

    def prediction(model: str, n: int, answer: str) -> dict:
        return {"model_id": model, "prompt_id": f"p{n}", "prediction": answer, "task_type": SEEDS[n]["task_type"],
                "finish_reason": "stop", "error": None}

    everything = pl.DataFrame(
        [prediction("lazy", n, fixed) for n in range(3)] + [prediction("other", n, f"answer {n}") for n in range(3)]
    )
    new = everything.filter((pl.col("prompt_id") == "p2") | (pl.col("model_id") == "other"))
    calls: list = []
    verdicts = judge_per_model(_recording_judge(calls), new, prompts, everything)
    assert len(verdicts) == new.height
    assert calls[0] == ([fixed], [fixed, fixed])  # "lazy": p2 now, p0 and p1 judged before
    assert calls[1] == (["answer 0", "answer 1", "answer 2"], [])
    assert "near-identical answers were given to 2 other prompts" in verdicts[0].lacking["correctness"]


def test_distill_pairs_judge_new_completions_against_the_passed_anchors():
    row = {"request_id": "r", "prompt_id": "p", "domain": "biology", "task_type": "hypothesis",
           "instruction": HYPOTHESIS_INSTRUCTION, "context": None, "completion": GOOD_HYPOTHESIS,
           "finish_reason": "stop", "completion_tokens": 200}
    anchor = {**row, "request_id": "a", "prompt_id": "q", "instruction": "Propose hypotheses about soil fungi.",
              "completion": GOOD_METHODOLOGY}
    calls: list = []
    evaluate_pairs([row], filters=FilterConfig(), gate=GateConfig(), judge=_recording_judge(calls),
                   judge_model="structural-v2", rubric_version="v2", anchors=[anchor])
    assert calls == [([GOOD_HYPOTHESIS], [GOOD_METHODOLOGY])]
