"""The stronger offline teacher: worked examples in context, best-of-n samples, and the chosen sample."""

from __future__ import annotations

import polars as pl

from nexa_assets.distill.completions import teacher_requests
from nexa_assets.distill.judging import regeneration_parents as _regeneration_parents
from nexa_assets.distill.pairs import mark_chosen
from nexa_resources.tables.distill import PAIR_SCHEMA
from nexa_assets.distill.task import format_messages, messages, worked_example
from nexa_core.templates import templates
from nexa_core.structural_judge import judge_structural
from nexa_resources.teacher import LOCAL_BEST_OF, LOCAL_REPETITION_PENALTY, TeacherResource

ROW = {
    "prompt_id": "p1",
    "domain": "physics",
    "task_type": "methodology",
    "instruction": "Design an experiment to measure how the damping of a pendulum depends on air pressure.",
    "context": None,
}


def test_worked_examples_are_versioned_templates_that_score_top_marks():
    assert {"example_hypothesis", "example_methodology"} <= set(templates().texts)
    for task_type in ("hypothesis", "methodology"):
        user, assistant = worked_example(task_type)
        assert user["role"] == "user" and assistant["role"] == "assistant"
        _, asked = format_messages({"task_type": task_type, "domain": "x", "instruction": "y"})
        assert asked.split("\n")[-1] == user["content"].split("\n")[-1]  # asked the way real prompts are
        instruction = user["content"].split("Task: ")[1].split("\n")[0]
        verdict = judge_structural(task_type, instruction, None, assistant["content"])
        # judge v2 may take one point of correctness from the terse protocol: its steps add few words
        # beyond its task's own
        assert min(verdict.scores.values()) >= 4 and sum(verdict.scores.values()) >= 24, verdict


def test_best_of_n_sends_one_request_per_sample_with_its_own_identity():
    local = TeacherResource()
    assert local.samples == LOCAL_BEST_OF == 4
    remote = TeacherResource(base_url="http://127.0.0.1:1/v1", model="m")
    assert remote.samples == 1  # a paid endpoint is not asked n times unless configured
    # A prompt whose samples all failed is asked again only of a teacher answering once per prompt.
    assert (local.regenerations, remote.regenerations) == (0, 1)
    requests = teacher_requests(pl.DataFrame([ROW]), TeacherResource(best_of=3))
    assert [r["sample_index"] for r in requests] == [0, 1, 2]
    assert len({r["request_id"] for r in requests}) == 3
    again = teacher_requests(pl.DataFrame([ROW]), TeacherResource(best_of=3))
    assert [r["request_id"] for r in again] == [r["request_id"] for r in requests]  # stable: never paid twice
    without = teacher_requests(pl.DataFrame([ROW]), TeacherResource(best_of=3, worked_examples=0))
    assert not {r["request_id"] for r in without} & {r["request_id"] for r in requests}


def test_the_teacher_sees_the_example_and_the_student_prompt_does_not():
    [request] = teacher_requests(pl.DataFrame([ROW]), TeacherResource(best_of=1))
    sent = messages(request["system_prompt"], request["user_prompt"], request["shots"])
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert (request["system_prompt"], request["user_prompt"]) == format_messages(ROW)  # what SFT and eval use
    assert "4-nitrophenol" in sent[2]["content"] and "4-nitrophenol" not in request["user_prompt"]


def _pair(rid: str, prompt: str, sample: int, passed: bool, mean: float | None, parent: str | None = None) -> dict:
    return {
        "request_id": rid, "prompt_id": prompt, "domain": "physics", "task_type": "methodology", "passed": passed,
        "reject_reasons": [] if passed else ["missing_control"], "judge_mean": mean, "sample_index": sample,
        "regenerated_from": parent, "chosen": False,
    }


def test_the_best_passing_sample_is_chosen_and_only_failed_prompts_are_regenerated():
    pairs = pl.DataFrame(
        [
            _pair("a0", "A", 0, True, 4.0),
            _pair("a1", "A", 1, True, 4.6),
            _pair("a2", "A", 2, False, 4.9),  # the best score, but rejected by a filter
            _pair("a3", "A", 3, True, 4.6),  # ties with a1: the lower sample index wins
            _pair("b0", "B", 0, False, 2.0),
            _pair("b1", "B", 1, False, 3.0),
        ],
        schema={k: v for k, v in PAIR_SCHEMA.items() if k in _pair("x", "x", 0, True, 1.0)},
    )
    chosen = mark_chosen(pairs).filter(pl.col("chosen"))["request_id"].to_list()
    assert chosen == ["a1"]
    parents = _regeneration_parents(pairs, depth=1)
    assert parents["request_id"].to_list() == ["b1"]  # one request per prompt with no passing sample
    regenerated = pl.concat([pairs, pl.DataFrame([_pair("b9", "B", 0, True, 4.2, parent="b1")], schema=pairs.schema)])
    assert _regeneration_parents(regenerated, depth=1).is_empty()
    assert mark_chosen(regenerated).filter(pl.col("chosen"))["request_id"].sort().to_list() == ["a1", "b9"]


def test_the_local_teacher_samples_with_a_repetition_penalty_and_a_paid_endpoint_does_not():
    local = TeacherResource()
    remote = TeacherResource(base_url="http://127.0.0.1:9/v1", model="gpt-4o-mini")
    assert local.sampling().as_request()["repetition_penalty"] == LOCAL_REPETITION_PENALTY > 1
    assert "repetition_penalty" not in remote.sampling().as_request()  # OpenAI rejects the field
    assert TeacherResource(repetition_penalty=1.0).sampling().repetition_penalty == 1.0  # an explicit value wins
    assert local.sampling().fingerprint() != TeacherResource(repetition_penalty=1.0).sampling().fingerprint()
