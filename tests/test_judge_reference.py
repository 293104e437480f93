"""Judging against the teacher's answer to the same eval prompt (issue 12 item 3): what counts as agreement, that
it cannot be gamed by echoing the prompt or the teacher's habits, the LLM judge's reference prompt, and the
eval/scores wiring (the teacher row's answers as references, a rubric version of their own)."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from nexa_assets.evaluate.assets import eval_metrics, eval_scores
from nexa_core.content import stems
from nexa_core.reference import (
    ReferenceSet,
    reference_terms,
    reference_version,
    teacher_habits,
)
from nexa_core.rubric import NO_REFERENCE, format_judge_messages, load_rubric
from nexa_resources.tables.eval import EVAL_PROMPT_SCHEMA, PREDICTION_SCHEMA
from nexa_assets.evaluate.scoring import teacher_references
from nexa_core.structural_judge import judge_structural_batch
from nexa_resources.judge import STRUCTURAL_JUDGE_ID, JudgeResource
from nexa_resources.lake import LakeResource, Lineage
from nexa_testing.scripted_server import ScriptedServer, fingerprint
from test_distill_filters import GOOD_HYPOTHESIS
from test_structural_judge import HYPOTHESIS_INSTRUCTION

# The teacher's answer to HYPOTHESIS_INSTRUCTION: its own content is membranes, ribosomes, chaperones...
REFERENCE = "\n".join([
    ("1. Membrane fluidity: at elevated temperature the lipid membrane of E. coli becomes leaky. "
     "Prediction: potassium leakage (mM) rises above 40 °C and growth in minimal medium slows; cells fed "
     "saturated fatty acids lose less."),
    ("2. Ribosome stalling: translation slows at elevated temperature. Prediction: the polysome fraction "
     "falls by 30% at 45 °C."),
    ("3. Chaperone demand: misfolded proteins aggregate as temperature rises. Prediction: insoluble "
     "protein (mg per g of cells) doubles at 44 °C."),
])

# The same ideas in other words: it agrees with the reference.
AGREEING = "\n".join([
    ("1. Membrane damage: elevated temperature makes the lipid bilayer of E. coli leak ions. Prediction: "
     "potassium leakage would rise 2-fold at 44 °C and growth in minimal medium would slow, less so in "
     "cells fed saturated fatty acids."),
    ("2. Ribosome stalling slows translation at high temperature. Prediction: the polysome fraction falls "
     "by at least 30% at 45 °C versus 37 °C."),
    ("3. Misfolded proteins aggregate at elevated temperature and chaperone demand rises. Prediction: "
     "insoluble protein doubles at 44 °C."),
])

# Other teachers' answers to other prompts, and students' answers that share no idea with their prompt's reference.
TEACHER = [
    REFERENCE,
    "\n".join([
        ("1. Heat-shock regulation: elevated temperature activates the sigma factor RpoH in E. coli. "
         "Prediction: rpoH deletion mutants show 50% slower growth in minimal medium at 42 °C."),
        ("2. Protease load: at high temperature the Lon protease degrades damaged enzymes. Prediction: lon "
         "mutants accumulate 3-fold more aggregated protein at 44 °C."),
        ("3. Energy drain: chaperone synthesis at high temperature consumes ATP. Prediction: ATP per cell "
         "falls by 40% at 43 °C."),
    ]),
    "\n".join([
        ("1. Oxygen limitation: dissolved oxygen falls at elevated temperature, limiting respiration of E. "
         "coli. Prediction: growth in minimal medium at 42 °C recovers when aeration keeps dissolved oxygen "
         "above 60%."),
        ("2. Enzyme instability: glycolytic enzymes denature at high temperature. Prediction: pyruvate kinase "
         "activity drops by 50% after 1 h at 45 °C."),
        ("3. Division arrest: FtsZ rings fail to assemble at high temperature. Prediction: filamentous cells "
         "exceed 20% of the population at 44 °C."),
    ]),
]
STUDENT = [
    GOOD_HYPOTHESIS,
    "\n".join([
        ("1. Oxygen supply: elevated temperature lowers dissolved oxygen, so E. coli growth in minimal medium "
         "becomes oxygen-limited. Prediction: sparging with pure oxygen restores 80% of the growth rate at 42 "
         "°C."),
        ("2. DNA supercoiling relaxes at high temperature. Prediction: the linking number of a reporter "
         "plasmid shifts by 2 at 44 °C."),
        ("3. Iron uptake: siderophore export slows at high temperature. Prediction: 10 µM ferric citrate "
         "restores growth at 43 °C."),
    ]),
    "\n".join([
        ("1. Membrane lipids: elevated temperature makes the E. coli membrane too fluid. Prediction: strains "
         "with more saturated fatty acids keep 70% of their growth rate in minimal medium at 43 °C."),
        "2. Ribosome assembly stalls at high temperature. Prediction: free 30S subunits rise 3-fold at 45 °C.",
        ("3. Nutrient transport: glucose uptake through the PTS slows at high temperature. Prediction: "
         "14C-glucose uptake would fall 40% at 44 °C."),
    ]),
]
# Well formed, on topic, and sharing no idea with REFERENCE.
DISAGREEING = STUDENT[1]


def item(answer: str, instruction: str = HYPOTHESIS_INSTRUCTION, context: str | None = None) -> dict:
    return {"task_type": "hypothesis", "instruction": instruction, "context": context, "answer": answer,
            "finish_reason": "stop"}


def ref_row(instruction: str, reference: str) -> dict:
    return {"task_type": "hypothesis", "instruction": instruction, "context": None, "reference": reference,
            "finish_reason": "stop"}


def references(*rows: tuple[str, str], weight: float = 0.25) -> ReferenceSet:
    return ReferenceSet.build([ref_row(i, r) for i, r in rows], weight=weight)


def correctness(answer: str, refs: ReferenceSet | None) -> int:
    [verdict] = judge_structural_batch([item(answer)], references=refs)
    return verdict.scores["correctness"]


# --- what agreement is ----------------------------------------------------------------------------------------


def test_reference_terms_leave_out_the_prompt_boilerplate_the_worked_examples_and_habits():
    terms = reference_terms(REFERENCE, HYPOTHESIS_INSTRUCTION, None)
    assert {"membr", "ribos", "chape", "potas"} <= terms
    assert not terms & stems(HYPOTHESIS_INSTRUCTION)  # "temperature", "growth": the prompt's own words
    assert not terms & {"predi", "contr", "measu", "incre"}  # boilerplate any answer can add
    honeybee = reference_terms("Foragers leave the hive when nectar and sucrose run low.", HYPOTHESIS_INSTRUCTION, None)
    assert not honeybee & {"forag", "necta", "sucro"}  # the worked example's topic: a copy must not agree
    assert "membr" not in reference_terms(REFERENCE, HYPOTHESIS_INSTRUCTION, None, habits={"membr"})


def test_habits_are_the_words_the_teacher_puts_in_answers_to_many_prompts():
    rows = [ref_row(f"Propose hypotheses about topic {n}.", f"1. Viscosity and subject{n} ions. 2. Osmolarity, subject{n}.")
            for n in range(10)]
    assert {"visco", "osmol"} <= teacher_habits(rows)
    assert not any(s.startswith("subje") for s in teacher_habits(rows[:2]))  # under 3 prompts: never a habit


def test_agreement_counts_only_the_reference_s_own_content():
    refs = references((HYPOTHESIS_INSTRUCTION, REFERENCE))
    assert refs.agreement(item(AGREEING)) == 1.0
    assert refs.agreement(item(DISAGREEING)) < 0.5
    echo = "1. Elevated temperature affects the growth of Escherichia coli in minimal medium, measured with a control."
    assert refs.agreement(item(echo)) == 0.0  # the prompt's words and boilerplate share nothing with the reference
    assert refs.agreement(item(REFERENCE)) is None  # the teacher's own answer is judged on its own
    assert refs.agreement(item(AGREEING, instruction="Another prompt.")) is None
    short = ReferenceSet.build([ref_row(HYPOTHESIS_INSTRUCTION, "1. Ribosomes stall.")], min_correctness=1)
    assert len(short) == 1 and short.agreement(item(AGREEING)) is None  # too little of its own to compare against


def test_only_a_reference_the_judge_itself_accepts_is_used():
    """A 135M teacher's loop or restatement of the prompt is no evidence: agreeing with it earns nothing."""
    restated = "Elevated temperature affects growth of Escherichia coli in minimal medium."
    looping = "\n".join(f"{n}. {restated}" for n in (1, 2, 3))
    refs = ReferenceSet.build([ref_row(HYPOTHESIS_INSTRUCTION, looping)])
    assert refs.answered == 1 and len(refs) == 0
    assert refs.text(item(AGREEING)) is None and refs.agreement(item(AGREEING)) is None
    assert len(ReferenceSet.build([ref_row(HYPOTHESIS_INSTRUCTION, looping)], min_correctness=1)) == 1


def test_blend_weights_agreement_into_correctness_and_never_raises_it():
    refs = references((HYPOTHESIS_INSTRUCTION, REFERENCE), weight=0.25)
    assert [refs.blend(5, a) for a in (0.0, 0.5, 1.0)] == [4, 5, 5]
    assert [refs.blend(s, 1.0) for s in (1, 2, 3, 4)] == [1, 2, 3, 4]  # full agreement adds nothing
    assert refs.blend(2, 0.0) == 2 and refs.blend(1, 0.0) == 1
    with pytest.raises(ValueError, match="weight"):
        references((HYPOTHESIS_INSTRUCTION, REFERENCE), weight=1.5)


def test_the_structural_judge_lowers_correctness_of_an_answer_that_shares_nothing_with_the_reference():
    refs = references((HYPOTHESIS_INSTRUCTION, REFERENCE))
    assert correctness(AGREEING, None) == correctness(AGREEING, refs) == 5
    [plain] = judge_structural_batch([item(DISAGREEING)])
    [judged] = judge_structural_batch([item(DISAGREEING)], references=references(
        (HYPOTHESIS_INSTRUCTION, REFERENCE), weight=1.0))
    assert judged.scores["correctness"] < plain.scores["correctness"]
    assert "reference answer" in judged.lacking["correctness"]
    for metric in ("clarity", "hallucination_safety"):
        assert judged.scores[metric] == plain.scores[metric]
    assert judge_structural_batch([item(REFERENCE)], references=refs) == judge_structural_batch([item(REFERENCE)])


def test_copying_the_teacher_s_habits_or_the_prompt_gains_nothing():
    """A 135M student learns the teacher's stock words: stuffed into an answer, they are not agreement."""
    prompts = [f"Propose hypotheses for why alloy sample {n} cracks under load." for n in range(6)]
    habit = "viscosity, osmolarity and turbulence"
    refs = ReferenceSet.build(
        [ref_row(p, f"1. Grain boundary {n}: {habit} explain it.") for n, p in enumerate(prompts)]
        + [ref_row(HYPOTHESIS_INSTRUCTION, REFERENCE + f" It is {habit}.")]
    )
    assert refs.text(item(DISAGREEING)) is not None  # the reference is trusted; the alloy ones are not, but count
    assert {"visco", "osmol", "turbu"} <= teacher_habits([ref_row(p, f"1. Grain: {habit}.") for p in prompts])
    stuffed = DISAGREEING + f"\nEach involves {habit}."
    assert refs.agreement(item(stuffed)) == refs.agreement(item(DISAGREEING))
    assert not stems(habit) & next(iter(refs.terms.values()))


# --- the LLM judge's reference prompt ---------------------------------------------------------------------------


def test_the_reference_rubric_shows_the_llm_judge_the_teacher_s_answer():
    plain, with_reference = load_rubric("rubric_v2"), load_rubric("rubric_v2_reference")
    assert not plain.takes_reference and with_reference.takes_reference
    assert with_reference.metrics == plain.metrics and with_reference.version != plain.version
    assert "small and wrong" in with_reference.system_prompt and "must not lose points for differing" in \
        with_reference.system_prompt
    _, user = format_judge_messages(with_reference, "hypothesis", HYPOTHESIS_INSTRUCTION, None, AGREEING, REFERENCE)
    text = user["content"]
    assert f"<reference>\n{REFERENCE}\n</reference>" in text and text.index("<reference>") < text.index("<answer>")
    _, none = format_judge_messages(with_reference, "hypothesis", HYPOTHESIS_INSTRUCTION, None, AGREEING)
    assert NO_REFERENCE in none["content"]
    with pytest.raises(ValueError, match="_reference variant"):
        format_judge_messages(plain, "hypothesis", HYPOTHESIS_INSTRUCTION, None, AGREEING, REFERENCE)


def test_the_reference_option_is_off_unless_asked_for(monkeypatch):
    monkeypatch.delenv("NEXA_JUDGE_REFERENCE", raising=False)
    assert not JudgeResource().reference and not JudgeResource.from_env().reference
    monkeypatch.setenv("NEXA_JUDGE_REFERENCE", "1")
    assert JudgeResource.from_env().reference


def test_judge_versions_with_and_without_reference_never_coincide():
    off, on = JudgeResource(), JudgeResource(reference=True)
    assert off.eval_rubric_version("teacher:a") == off.rubric_version == on.rubric_version  # distill/pairs: as before
    assert on.eval_rubric_version("teacher:a") == reference_version(load_rubric("rubric_v2_reference").version,
                                                                    "teacher:a")
    assert len({off.rubric_version, on.eval_rubric_version("teacher:a"), on.eval_rubric_version("teacher:b")}) == 3
    with pytest.raises(ValueError, match="no reference variant: with reference on, valid rubrics are rubric_v2"):
        _ = JudgeResource(rubric="rubric_v1", reference=True).reference_rubric
    with pytest.raises(ValueError, match="no teacher row"):
        on.eval_rubric_version(None)


# --- eval/scores ----------------------------------------------------------------------------------------------

PROMPTS = [(f"ep-{n}", f"{HYPOTHESIS_INSTRUCTION[:-1]} (strain {n}).") for n in range(3)]


def plant(lake: LakeResource, teacher: bool = True) -> None:
    """3 eval prompts; the student's answer to each shares no idea with the teacher's (TEACHER); an older teacher
    answered one prompt."""
    prompts = [{"prompt_id": pid, "domain": "biology", "task_type": "hypothesis", "instruction": text, "context": None,
                "source": "test", "origin": "seed", "eval_set": "es-1"} for pid, text in PROMPTS]

    def row(model: str, kind: str, pid: str, answer: str | None, error: str | None = None) -> dict:
        return {"model_id": model, "prompt_id": pid, "model_kind": kind, "model_label": model, "domain": "biology",
                "task_type": "hypothesis", "finish_reason": "stop", "eval_set": "es-1", "prediction": answer,
                "error": error}

    rows = [row("ckpt-1", "checkpoint", pid, STUDENT[n]) for n, (pid, _) in enumerate(PROMPTS)]
    if teacher:
        rows += [row("teacher:t", "teacher", pid, TEACHER[n]) for n, (pid, _) in enumerate(PROMPTS)]
        rows += [row("teacher:old", "teacher", "ep-0", "An old teacher's answer."),
                 row("teacher:old", "teacher", "ep-1", None, "HTTP 500")]
    lineage = Lineage(run_id="plant", round=0)
    lake.write("eval/prompts", pl.DataFrame(prompts, schema=EVAL_PROMPT_SCHEMA), mode="merge", lineage=lineage)
    lake.write("eval/predictions", pl.DataFrame(rows, schema=PREDICTION_SCHEMA), mode="merge", lineage=lineage)
    lake.write("train/checkpoints", pl.DataFrame({"checkpoint_id": ["ckpt-1"], "uri": ["/nowhere/ckpt-1"]}),
               mode="merge", lineage=lineage)


def test_teacher_references_are_the_answers_of_the_teacher_row_with_most_answers(lake):
    plant(lake)
    predictions, prompts = lake.read("eval/predictions"), lake.read("eval/prompts")
    model, rows = teacher_references(predictions, prompts)
    assert model == "teacher:t" and sorted(r["prompt_id"] for r in rows) == ["ep-0", "ep-1", "ep-2"]
    assert {r["reference"] for r in rows} == set(TEACHER)
    assert teacher_references(predictions.filter(pl.col("model_kind") != "teacher"), prompts) == (None, [])


def materialize(lake: LakeResource, judge: JudgeResource, assets: list | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets or [eval_scores], resources={"lake": lake, "judge": judge},
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_eval_scores_judged_against_the_teacher_row_under_a_version_of_their_own(lake):
    plant(lake)
    assert materialize(lake, JudgeResource()).success
    plain = lake.read("eval/scores")
    judge = JudgeResource(reference=True)
    result = materialize(lake, judge, [eval_scores, eval_metrics])
    assert result.success
    scores = lake.read("eval/scores")
    version = reference_version(load_rubric("rubric_v2_reference").version, "teacher:t")
    assert set(scores["rubric_version"]) == {version} and set(scores["judge_model"]) == {STRUCTURAL_JUDGE_ID}
    meta = result.asset_materializations_for_node("eval__scores")[0].metadata
    assert meta["reference_model"].value == "teacher:t"
    # the student's 3 and the older teacher's 1; the teacher's own answers are judged on their own
    assert meta["judged_with_reference"].value == 4

    def score(frame: pl.DataFrame, model: str, metric: str = "correctness") -> list[int]:
        mine = frame.filter((pl.col("model_id") == model) & (pl.col("metric") == metric))
        return mine.sort("prompt_id")["score"].to_list()

    assert all(a < b for a, b in zip(score(scores, "ckpt-1"), score(plain, "ckpt-1")))  # shares nothing with them
    assert score(scores, "teacher:t") == score(plain, "teacher:t")  # its own reference changes nothing
    metrics = lake.read("eval/metrics")
    assert set(metrics["rubric_version"]) == {version}
    assert metrics.filter((pl.col("model_id") == "ckpt-1") & (pl.col("metric") == "correctness"))["mean"][0] == \
        pytest.approx(sum(score(scores, "ckpt-1")) / 3)

    assert materialize(lake, JudgeResource()).success  # back to no reference: judged again, the plain version
    assert set(lake.read("eval/scores")["rubric_version"]) == {JudgeResource().rubric_version}


def test_with_reference_on_and_no_teacher_row_eval_scores_says_what_to_do(lake):
    plant(lake, teacher=False)
    result = materialize(lake, JudgeResource(reference=True))
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "include_teacher: true" in failure


def test_the_llm_judge_is_sent_the_teacher_s_answer(srv: ScriptedServer, lake):
    plant(lake)
    judge = JudgeResource(kind="llm", base_url=srv.base_url, model="scripted-judge", api_key="sk", reference=True,
                          max_retries=1, backoff_base_s=0.01, timeout_s=10.0)
    assert materialize(lake, judge).success
    rubric = load_rubric("rubric_v2_reference")
    student = lake.read("eval/predictions").filter(pl.col("model_id") == "ckpt-1").sort("prompt_id")
    expected = {
        fingerprint("scripted-judge", format_judge_messages(rubric, "hypothesis", text, None, answer, reference))
        for (_, text), answer, reference in zip(PROMPTS, student["prediction"], TEACHER, strict=True)
    }
    assert expected <= set(srv.stats()["fingerprints"])
    # the student's 3, the teacher's 3 (each its own reference: none shown) and the older teacher's 1
    assert srv.stats()["requests"] == 7
