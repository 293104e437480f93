"""The bad-input corpus: every case is rejected with its expected reason, naming its file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nexa_assets.raw.ingest import ingest, seed_pack_records
from nexa_assets.raw.readers import parse_file
from nexa_assets.raw.validate import REASON_CODES, ValidationRules, prompt_id, split_for, validate_records
from nexa_assets.taxonomy import DOMAINS, TASK_TYPES

CORPUS = Path(__file__).parent / "fixtures" / "bad_inputs"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


def corpus_files() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(CORPUS.iterdir()) if p.name != "expected.json"]


def test_every_bad_case_is_rejected_with_its_reason_and_locator():
    result = ingest(rules=ValidationRules(), include_seed_pack=False, files=corpus_files())
    got = {row["locator"]: row["reason_code"] for row in result.rejects.iter_rows(named=True)}
    assert got == EXPECTED["rejects"]
    assert result.prompts.height == EXPECTED["valid_rows"]
    assert set(result.rejects["reason_code"]) <= set(REASON_CODES)
    for row in result.rejects.iter_rows(named=True):
        assert row["reason"].startswith(row["locator"]), row  # the message names file:line
        assert row["raw"]  # the original text is kept


def test_reason_messages_list_valid_values():
    result = ingest(rules=ValidationRules(), include_seed_pack=False, files=corpus_files())
    reasons = dict(zip(result.rejects["locator"], result.rejects["reason"]))
    assert all(d in reasons["rows.jsonl:8"] for d in DOMAINS)
    assert all(t in reasons["rows.jsonl:9"] for t in TASK_TYPES)
    assert "'instruction'" in reasons["rows.jsonl:4"] and "int" in reasons["rows.jsonl:4"]
    assert "duplicate of rows.jsonl:1" in reasons["rows.jsonl:10"]
    assert "2000" in reasons["rows.jsonl:6"]
    assert "Parquet" in reasons["broken.parquet"]


def test_good_rows_are_normalized_and_keyed():
    result = ingest(rules=ValidationRules(), include_seed_pack=False, files=corpus_files())
    materials = result.prompts.filter(result.prompts["domain"] == "materials").row(0, named=True)
    assert materials["task_type"] == "methodology"  # "Methodology" folded to the valid value
    assert materials["context"] == "Earlier samples failed at nodes."
    assert materials["prompt_id"] == prompt_id("materials", "methodology", materials["instruction"], materials["context"])
    assert result.prompts["prompt_id"].n_unique() == result.prompts.height


def test_max_length_is_configurable():
    records = parse_file("a.jsonl", b'{"domain":"physics","task_type":"hypothesis","instruction":"0123456789A"}\n')
    ok, bad = validate_records(records, origin="file", rules=ValidationRules(max_instruction_chars=10))
    assert not ok and bad[0]["reason_code"] == "too_long"
    ok, bad = validate_records(records, origin="file", rules=ValidationRules(max_instruction_chars=11))
    assert len(ok) == 1 and not bad


def test_reading_the_same_row_again_is_not_a_duplicate():
    records = parse_file("a.jsonl", b'{"domain":"physics","task_type":"hypothesis","instruction":"Why X?"}\n')
    ok, _ = validate_records(records, origin="file", rules=ValidationRules())
    existing = {ok[0]["prompt_id"]: ok[0]["locator"]}
    again, bad = validate_records(records, origin="file", rules=ValidationRules(), existing=existing)
    assert len(again) == 1 and not bad
    moved = parse_file("b.jsonl", b'{"domain":"physics","task_type":"hypothesis","instruction":"why  x?"}\n')
    none, dup = validate_records(moved, origin="file", rules=ValidationRules(), existing=existing)
    assert not none and dup[0]["reason"] == "b.jsonl:1: duplicate of a.jsonl:1 after normalization"


def test_seed_pack_covers_every_cell_with_both_splits():
    result = ingest(rules=ValidationRules(), include_seed_pack=True)
    assert result.rejects.is_empty()
    assert result.prompts.height >= 240
    cells = result.prompts.group_by("domain", "task_type").len()
    assert cells.height == len(DOMAINS) * len(TASK_TYPES)
    assert cells["len"].min() >= 30
    assert set(result.prompts["split"]) == {"train", "eval"}
    assert result.prompts["context"].is_not_null().sum() >= 20
    eval_share = (result.prompts["split"] == "eval").mean()
    assert 0.08 < eval_share < 0.25
    assert len(seed_pack_records()) == result.prompts.height


def test_split_is_deterministic_and_only_for_seed_and_file_prompts():
    ids = [prompt_id("physics", "hypothesis", f"instruction {i}", None) for i in range(2000)]
    splits = [split_for(pid, "seed", 0.15) for pid in ids]
    assert splits == [split_for(pid, "seed", 0.15) for pid in ids]
    assert 0.12 < splits.count("eval") / len(splits) < 0.18
    assert {split_for(pid, "feedback", 0.15) for pid in ids} == {"train"}
    assert {split_for(pid, "generated", 0.15) for pid in ids} == {"train"}


@pytest.mark.parametrize("origin", ["seed", "feedback"])
def test_unknown_origin_is_refused_but_known_ones_work(origin):
    validate_records([], origin=origin, rules=ValidationRules())
    with pytest.raises(ValueError, match="valid values are seed, generated, feedback, file"):
        validate_records([], origin="web", rules=ValidationRules())
