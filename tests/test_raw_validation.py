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
from nexa_core.taxonomy import DOMAINS, TASK_TYPES

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


# --------------------------------------------------------------------------- odd and hostile input files

CSV_HEADER = b"domain,task_type,instruction,context\n"


def ingest_one(name: str, data: bytes):
    return ingest(rules=ValidationRules(), include_seed_pack=False, files=[(name, data)])


def test_csv_unclosed_quote_rejects_its_line_and_keeps_the_rows_after_it():
    # issue 13: this file used to become one prompt swallowing both good rows, with no reject
    data = (
        CSV_HEADER + b'physics,hypothesis,"never closed quote,\n'
        b"biology,hypothesis,Good row one about enzyme kinetics,\nchemistry,methodology,Good row two,\n"
    )
    result = ingest_one("mid.csv", data)
    assert result.prompts["instruction"].to_list() == ["Good row one about enzyme kinetics", "Good row two"]
    [reject] = result.rejects.iter_rows(named=True)
    assert reject["locator"] == "mid.csv:2" and reject["reason_code"] == "invalid_csv"
    assert reject["reason"].startswith("mid.csv:2: field 'instruction' (column 3) opens a quote that is not closed")
    assert "end of the file" in reject["reason"] and "resumes at line 3" in reject["reason"]
    assert reject["raw"] == 'physics,hypothesis,"never closed quote,'


def test_csv_unclosed_quote_closed_by_a_later_rows_quote_is_caught():
    # the stray quote pairs with the closing quote of line 3: strict parsing alone would accept one long row
    data = CSV_HEADER + b'physics,hypothesis,"open quote,\nbiology,hypothesis,Second row,ctx"\nchemistry,methodology,Third,\n'
    result = ingest_one("pair.csv", data)
    assert dict(zip(result.rejects["locator"], result.rejects["reason_code"])) == {"pair.csv:2": "invalid_csv"}
    assert "line 3, which reads as a row of its own" in result.rejects["reason"][0]
    assert result.prompts["instruction"].to_list() == ["Second row", "Third"]


def test_csv_text_after_a_closing_quote_names_the_field():
    result = ingest_one("stray.csv", CSV_HEADER + b'physics,hypothesis,"quoted"tail,\nbiology,hypothesis,Fine row,\n')
    [reason] = result.rejects["reason"]
    assert reason.startswith("stray.csv:2: field 'instruction' (column 3) has text after its closing quote")
    assert result.prompts["instruction"].to_list() == ["Fine row"]


def test_csv_quoted_fields_over_several_lines_still_parse():
    data = (
        b"domain,task_type,instruction,context\r\n"
        b'physics,hypothesis,"Line one,\r\nline two, with commas","Context a,\nsee biology,hypothesis, b"\r\n'
        b'chemistry,methodology,"Say ""why"" twice",\r\n'
    )
    result = ingest_one("multi.csv", data)
    assert result.rejects.is_empty()
    assert result.prompts["instruction"].to_list() == ["Line one,\r\nline two, with commas", 'Say "why" twice']
    assert result.prompts["context"][0] == "Context a,\nsee biology,hypothesis, b"  # not a row of its own
    assert result.prompts["locator"].to_list() == ["multi.csv:4", "multi.csv:5"]  # the line a row ends on


def test_csv_without_a_header_row_is_one_reject_listing_the_columns():
    data = b"physics,hypothesis,Why is the sky blue at noon?,\nbiology,hypothesis,Second row,\n"
    result = ingest_one("nohdr.csv", data)
    assert result.prompts.is_empty()
    [reject] = result.rejects.iter_rows(named=True)
    assert reject["locator"] == "nohdr.csv:1" and reject["reason_code"] == "missing_header"
    assert "missing domain, task_type, instruction" in reject["reason"]
    assert "domain, task_type, instruction (required) and context (optional)" in reject["reason"]
    assert reject["reason_code"] in REASON_CODES


def test_csv_header_names_ignore_case_and_spaces_but_not_repeats():
    result = ingest_one("upper.csv", b"Domain, Task_Type ,INSTRUCTION\nphysics,hypothesis,Why does ice float?\n")
    assert result.prompts["instruction"].to_list() == ["Why does ice float?"]
    result = ingest_one("dup.csv", b"domain,task_type,instruction,instruction\nphysics,hypothesis,a,b\n")
    assert result.rejects["reason"].to_list() == ["dup.csv:1: the header names column 'instruction' more than once; file not read"]


def test_a_csv_with_a_thousand_broken_quotes_stops_after_a_hundred():
    data = CSV_HEADER + b'physics,hypothesis,"x\n' * 1000 + b"biology,hypothesis,Last,\n"
    result = ingest_one("many.csv", data)
    assert result.rejects.height == 101 and result.prompts.is_empty()
    assert result.rejects["reason"][-1] == "many.csv:102: lines 102-1002 not read after 100 rows with broken quoting"


def test_utf8_byte_order_mark_is_not_part_of_the_first_row():
    row = b'{"domain":"physics","task_type":"hypothesis","instruction":"Why does ice float on water?"}\n'
    assert ingest_one("bom.jsonl", b"\xef\xbb\xbf" + row).rejects.is_empty()
    result = ingest_one("bom.csv", b"\xef\xbb\xbf" + CSV_HEADER + b"physics,hypothesis,Why does ice float?,\n")
    assert result.rejects.is_empty() and result.prompts.height == 1


@pytest.mark.parametrize(
    ("name", "data", "where"),
    [
        ("nul.jsonl", b'{"domain":"physics","task_type":"hypothesis","instruction":"Why does\\u0000 ice float?"}\n',
         "field 'instruction' holds control character U+0000 (NUL) at position 9"),
        ("nul.csv", CSV_HEADER + b"physics,hypothesis,Why does\x00 ice float?,\n",
         "field 'instruction' holds control character U+0000 (NUL) at position 9"),
        ("esc.jsonl", b'{"domain":"physics","task_type":"hypothesis","instruction":"Why?","context":"\\u001b[31mred"}\n',
         "field 'context' holds control character U+001B (ESC) at position 1"),
    ],
)
def test_control_characters_in_text_are_rejected(name, data, where):
    result = ingest_one(name, data)
    [reject] = result.rejects.iter_rows(named=True)
    assert reject["reason_code"] == "control_character" and reject["reason_code"] in REASON_CODES
    assert where in reject["reason"] and "only tab, line feed and carriage return are allowed" in reject["reason"]


def test_tabs_and_newlines_in_text_are_fine():
    row = {"domain": "physics", "task_type": "hypothesis", "instruction": "Why?\tReally:\r\nexplain.", "context": "a\nb"}
    assert ingest_one("ok.jsonl", json.dumps(row).encode() + b"\n").rejects.is_empty()


@pytest.mark.parametrize("name", ["random.jsonl", "random.csv"])
def test_a_binary_file_is_one_unparsable_file_reject(name):
    data = random.Random(13).randbytes(1 << 20)  # issue 13: 1 MB of random bytes gave 3,911 rejects
    result = ingest_one(name, data)
    [reject] = result.rejects.iter_rows(named=True)
    assert reject["reason_code"] == "unparsable_file" and reject["locator"] == name
    assert reject["reason"].startswith(f"{name}: not a UTF-8 text file")
    assert len(reject["raw"]) <= 2000


def test_utf16_file_is_told_to_be_saved_as_utf8():
    data = "\ufeffdomain,task_type,instruction\nphysics,hypothesis,Why?\n".encode("utf-16-le")
    [reason] = ingest_one("wide.csv", b"\xff\xfe" + data[2:]).rejects["reason"]
    assert "UTF-16" in reason and "save it as UTF-8" in reason


def test_a_latin1_file_is_text_with_bad_rows_not_a_binary_file():
    rows = [json.dumps({"domain": "physics", "task_type": "hypothesis", "instruction": f"Question {i} on ice"}) for i in range(20)]
    data = "\n".join(rows).encode() + '\n{"domain":"physics","task_type":"hypothesis","instruction":"Café"}\n'.encode("latin-1")
    result = ingest_one("latin.jsonl", data)
    assert result.prompts.height == 20
    assert dict(zip(result.rejects["locator"], result.rejects["reason_code"])) == {"latin.jsonl:21": "invalid_utf8"}
