"""The bad-input corpus: every case is rejected with its expected reason, naming its file and line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest

from nexa_assets.raw.ingest import ingest, seed_pack_records
from nexa_assets.raw.readers import parse_file
from nexa_assets.raw.validate import (
    EVAL_PER_CELL,
    REASON_CODES,
    ValidationRules,
    prompt_id,
    seed_eval_ids,
    split_for,
    split_key,
    validate_records,
)
from nexa_assets.sft.package import EvalIndex, ngrams
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
    assert result.rejects.is_empty()  # no duplicates after normalization either
    assert len(seed_pack_records()) == result.prompts.height >= 256
    cells = result.prompts.group_by("domain", "task_type", "split").len()
    assert cells.select("domain", "task_type").unique().height == len(DOMAINS) * len(TASK_TYPES)
    assert EVAL_PER_CELL >= 12
    assert set(cells.filter(pl.col("split") == "eval")["len"]) == {EVAL_PER_CELL}  # every cell, exactly
    assert cells.filter(pl.col("split") == "train")["len"].min() >= 20
    assert cells.height == 2 * len(DOMAINS) * len(TASK_TYPES)
    assert result.prompts.group_by("domain", "task_type").len()["len"].n_unique() == 1  # balanced
    assert result.prompts["context"].is_not_null().sum() >= 20
    assert result.prompts.filter(pl.col("split") == "eval")["context"].is_not_null().sum() >= 16


def test_seed_split_is_the_lowest_hashes_of_each_cell():
    prompts = ingest(rules=ValidationRules()).prompts.with_columns(
        pl.col("prompt_id").map_elements(split_key, return_dtype=pl.Float64).alias("key")
    )
    for (domain, task_type), cell in prompts.partition_by("domain", "task_type", as_dict=True).items():
        ranked = cell.sort("key")
        assert ranked["split"].to_list() == ["eval"] * EVAL_PER_CELL + ["train"] * (cell.height - EVAL_PER_CELL), (
            domain,
            task_type,
        )


def test_seed_split_depends_on_the_seed_pack_alone():
    records = seed_pack_records()
    rows, _ = validate_records(records, origin="seed", rules=ValidationRules())
    baseline = {r["prompt_id"]: r["split"] for r in rows}
    # Another order, a lake that already holds some of the pack (and other prompts), other batches seen.
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    existing = {pid: f"mine.jsonl:{i}" for i, pid in enumerate(sorted(baseline)[:40])}  # rejected as duplicates
    existing.update({prompt_id("physics", "hypothesis", f"other {i}", None): f"x.jsonl:{i}" for i in range(50)})
    again, dups = validate_records(shuffled, origin="seed", rules=ValidationRules(), existing=existing, seen={})
    assert len(dups) == 40
    assert {r["prompt_id"]: r["split"] for r in again} == {p: s for p, s in baseline.items() if p not in existing}
    # eval_per_cell is the only knob.
    five, _ = validate_records(records, origin="seed", rules=ValidationRules(eval_per_cell=5, eval_fraction=0.9))
    assert sum(r["split"] == "eval" for r in five) == 5 * len(DOMAINS) * len(TASK_TYPES)
    assert {r["prompt_id"] for r in five if r["split"] == "eval"} <= {p for p, s in baseline.items() if s == "eval"}


def test_seed_train_prompts_are_no_near_copies_of_seed_eval_prompts():
    prompts = ingest(rules=ValidationRules()).prompts
    index = EvalIndex.build(prompts.filter(pl.col("split") == "eval").iter_rows(named=True), 12)
    train = prompts.filter(pl.col("split") == "train")
    leaks = [r for r in train.iter_rows(named=True) if index.contaminated(r["instruction"], r["context"])]
    assert not leaks
    eval_grams = [ngrams(t, 3) for t in prompts.filter(pl.col("split") == "eval")["instruction"]]
    for text in train["instruction"]:
        grams = ngrams(text, 3)
        assert max(len(grams & e) / len(grams | e) for e in eval_grams) < 0.6, text


def test_seed_eval_ids_ranks_within_each_cell():
    ids = {(d, t): [prompt_id(d, t, f"instruction {i}", None) for i in range(20)] for d in DOMAINS for t in TASK_TYPES}
    cells = [(d, t, pid) for (d, t), pids in ids.items() for pid in pids]
    chosen = seed_eval_ids(cells, 4)
    assert chosen == seed_eval_ids(reversed(cells), 4)
    for pids in ids.values():
        assert set(sorted(pids, key=split_key)[:4]) == chosen & set(pids)
    assert seed_eval_ids(cells, 0) == frozenset()
    assert seed_eval_ids(cells, 99) == {pid for *_, pid in cells}


def test_file_split_is_by_hash_fraction_and_deterministic():
    ids = [prompt_id("physics", "hypothesis", f"instruction {i}", None) for i in range(2000)]
    splits = [split_for(pid, "file", 0.15) for pid in ids]
    assert splits == [split_for(pid, "file", 0.15) for pid in ids]
    assert 0.12 < splits.count("eval") / len(splits) < 0.18
    assert {split_for(pid, "feedback", 0.15, frozenset(ids)) for pid in ids} == {"train"}
    assert {split_for(pid, "generated", 0.15, frozenset(ids)) for pid in ids} == {"train"}
    assert {split_for(pid, "seed", 0.99) for pid in ids} == {"train"}  # seed prompts: only by rank
    records = parse_file("a.jsonl", b'{"domain":"physics","task_type":"hypothesis","instruction":"Why X?"}\n')
    [row], _ = validate_records(records, origin="file", rules=ValidationRules(eval_fraction=0.999999, eval_per_cell=0))
    assert row["split"] == "eval"


@pytest.mark.parametrize("origin", ["seed", "feedback"])
def test_unknown_origin_is_refused_but_known_ones_work(origin):
    validate_records([], origin=origin, rules=ValidationRules())
    with pytest.raises(ValueError, match="valid values are seed, generated, feedback, file"):
        validate_records([], origin="web", rules=ValidationRules())
