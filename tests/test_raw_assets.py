"""raw/prompts and raw/rejects materialized through Dagster on a real lake (local and S3)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pytest

from nexa_resources.tables.feedback import REQUEST_SCHEMA
from nexa_assets.raw.assets import raw_prompts
from nexa_assets.sft.package import EvalIndex
from nexa_resources.inputs import InputsResource
from nexa_resources.lake import LakeResource, Lineage

FIXTURES = Path(__file__).parent / "fixtures"


def materialize(lake: LakeResource, inputs: InputsResource, **config) -> dg.ExecuteInProcessResult:
    run_config = {"ops": {"raw_prompts": {"config": config}}} if config else None
    return dg.materialize(
        [raw_prompts],
        resources={"lake": lake, "inputs": inputs},
        instance=dg.DagsterInstance.ephemeral(),
        run_config=run_config,
    )


def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


@pytest.fixture
def inputs(tmp_path) -> InputsResource:
    folder = tmp_path / "inputs"
    folder.mkdir()
    return InputsResource(uri=str(folder))


def test_first_materialization_covers_every_cell_and_passes_checks(lake, inputs):
    result = materialize(lake, inputs)
    assert result.success
    prompts = lake.read("raw/prompts")
    assert prompts.height >= 240
    groups = prompts.group_by("domain", "task_type", "split").len()
    assert groups.select("domain", "task_type").unique().height >= 8
    assert set(groups["split"]) == {"train", "eval"}
    assert set(prompts["run_id"]) == {result.run_id}
    assert set(prompts["round"]) == {0}
    meta = metadata(result, "raw/prompts")
    assert meta["delta_version"] == 0 and meta["new_prompts"] == prompts.height
    assert "| domain |" in meta["by_cell_and_split"]
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"schema": True, "unique_prompt_id": True, "reject_rate": True}


def test_fresh_lake_holds_out_at_least_12_prompts_per_cell_the_same_every_time(lake, inputs, tmp_path):
    assert materialize(lake, inputs).success
    prompts = lake.read("raw/prompts")
    per_cell = prompts.filter(pl.col("split") == "eval").group_by("domain", "task_type").len()
    assert per_cell.height == 8 and per_cell["len"].min() >= 12
    assert prompts.filter(pl.col("split") == "train").group_by("domain", "task_type").len()["len"].min() >= 20
    assert set(prompts.filter(pl.col("split") == "eval")["origin"]) == {"seed"}

    other = LakeResource(root=str(tmp_path / "other_lake"))  # a second, independent fresh run
    assert materialize(other, inputs).success
    split = prompts.select("prompt_id", "split").sort("prompt_id")
    assert other.read("raw/prompts").select("prompt_id", "split").sort("prompt_id").equals(split)
    # Generated prompts and a user file in the lake change no seed prompt's split.
    shutil.copy(FIXTURES / "inputs" / "new_prompts.jsonl", Path(inputs.uri) / "new_prompts.jsonl")
    third = LakeResource(root=str(tmp_path / "third_lake"))
    assert materialize(third, inputs, include_seed_pack=False, generated_per_cell=5).success
    assert materialize(third, inputs).success
    seeded = third.read("raw/prompts").filter(pl.col("origin") == "seed").select("prompt_id", "split").sort("prompt_id")
    assert seeded.equals(split)


def test_a_lake_split_under_another_rule_keeps_its_rows_and_says_so(lake, inputs):
    old = materialize(lake, inputs, eval_per_cell=3)
    assert metadata(old, "raw/prompts")["split_differs_from_rule"] == 0
    before = lake.read("raw/prompts").sort("prompt_id")
    assert before.filter(pl.col("split") == "eval").height == 3 * 8
    result = materialize(lake, inputs)  # the default rule would hold out 12 per cell
    assert result.success
    assert metadata(result, "raw/prompts")["split_differs_from_rule"] == (12 - 3) * 8
    assert lake.read("raw/prompts").sort("prompt_id").equals(before)  # nothing moved between splits


def test_feedback_prompts_skip_hints_that_quote_an_eval_prompt(lake, inputs):
    materialize(lake, inputs)
    prompts = lake.read("raw/prompts")
    quoted = next(r for r in prompts.filter(pl.col("split") == "eval").iter_rows(named=True)
                  if len(r["instruction"].split()) >= 16)
    leak = " ".join(quoted["instruction"].split()[:13])
    request = {
        "domain": "biology", "task_type": "hypothesis", "for_round": 1, "n_prompts": 3, "gap": 1.0,
        "metrics": ["clarity"], "hints": [leak, "a measurable outcome"], "status": "open",
        "fulfilled_by": None, "prompt_ids": [],
    }
    lake.write("feedback/requests", pl.DataFrame([request], schema=REQUEST_SCHEMA), mode="merge",
               lineage=Lineage(run_id="judge", round=0))
    result = materialize(lake, inputs, feedback_from_pool=False)  # the generator only
    assert metadata(result, "raw/prompts")["feedback_prompts"] == 3
    fed = lake.read("raw/prompts").filter(pl.col("origin") == "feedback")
    assert fed.height == 3 and set(fed["split"]) == {"train"}
    assert not any(leak.lower() in text.lower() for text in fed["instruction"])
    index = EvalIndex.build(prompts.filter(pl.col("split") == "eval").iter_rows(named=True), 12)
    assert all(index.contaminated(text) is None for text in fed["instruction"])


def test_the_fulfilment_write_shows_in_the_requests_history(lake, inputs):
    """feedback/requests is feedback_loop's table; raw/prompts' write to it is a materialization event of it."""
    materialize(lake, inputs)
    request = {
        "domain": "physics", "task_type": "methodology", "for_round": 1, "n_prompts": 2, "gap": 1.0,
        "metrics": ["specificity"], "hints": [], "status": "open", "fulfilled_by": None, "prompt_ids": [],
    }
    lake.write("feedback/requests", pl.DataFrame([request], schema=REQUEST_SCHEMA), mode="merge",
               lineage=Lineage(run_id="judge", round=0))
    result = materialize(lake, inputs)
    events = {e.asset_key.to_user_string(): e.materialization for e in result.get_asset_materialization_events()}
    recorded = events["feedback/requests"]
    assert recorded.metadata["fulfilled"].value == 1
    assert recorded.metadata["delta_version"].value == lake.version("feedback/requests")
    assert result.run_id in recorded.description


def test_feedback_buys_the_cells_unanswered_train_prompts_before_generating_new_ones(lake, inputs):
    materialize(lake, inputs)
    cell = (pl.col("domain") == "physics") & (pl.col("task_type") == "methodology")
    pool = lake.read("raw/prompts").filter(cell & (pl.col("split") == "train")).sort("prompt_id")
    request = {
        "domain": "physics", "task_type": "methodology", "for_round": 1, "n_prompts": pool.height + 2, "gap": 1.0,
        "metrics": ["specificity"], "hints": ["name the control"], "status": "open", "fulfilled_by": None,
        "prompt_ids": [],
    }
    lake.write("feedback/requests", pl.DataFrame([request], schema=REQUEST_SCHEMA), mode="merge",
               lineage=Lineage(run_id="judge", round=0))
    result = materialize(lake, inputs)
    meta = metadata(result, "raw/prompts")
    assert meta["feedback_bought_from_pool"] == pool.height and meta["feedback_prompts"] == 2  # pool first, then new
    after = lake.read("raw/prompts")
    bought = after.filter(pl.col("bought_for_round") == 1)
    assert sorted(bought["prompt_id"]) == sorted(pool["prompt_id"]) and set(bought["origin"]) == {"seed"}
    assert set(bought["round"]) == {1}
    [done] = lake.read("feedback/requests").to_dicts()
    assert done["status"] == "done" and len(done["prompt_ids"]) == pool.height + 2
    assert set(pool["prompt_id"]) <= set(done["prompt_ids"])
    assert after.filter(~cell)["bought_for_round"].is_null().all()  # other cells untouched

    version = lake.version("raw/prompts")
    materialize(lake, inputs)  # the request is done: nothing is bought twice
    assert lake.version("raw/prompts") == version


def test_a_feedback_round_takes_pool_prompts_the_teachers_per_cell_cap_left_out(lake, inputs):
    materialize(lake, inputs)
    cell = (pl.col("domain") == "biology") & (pl.col("task_type") == "hypothesis")
    pool = lake.read("raw/prompts").filter(cell & (pl.col("split") == "train")).sort("prompt_id")
    request = {
        "domain": "biology", "task_type": "hypothesis", "for_round": 1, "n_prompts": 3, "gap": 1.0,
        "metrics": ["specificity"], "hints": [], "status": "open", "fulfilled_by": None, "prompt_ids": [],
    }
    lake.write("feedback/requests", pl.DataFrame([request], schema=REQUEST_SCHEMA), mode="merge",
               lineage=Lineage(run_id="judge", round=0))
    materialize(lake, inputs)
    bought = lake.read("raw/prompts").filter(pl.col("bought_for_round") == 1)
    # The teacher's cap answers a cell's first per_cell prompts by id; a request takes the last ones.
    assert sorted(bought["prompt_id"]) == pool["prompt_id"].to_list()[-3:]


def test_rematerializing_adds_nothing_and_changes_nothing(lake, inputs):
    materialize(lake, inputs)
    before = lake.read("raw/prompts").sort("prompt_id")
    version = lake.version("raw/prompts")
    result = materialize(lake, inputs)
    assert metadata(result, "raw/prompts")["new_prompts"] == 0
    after = lake.read("raw/prompts").sort("prompt_id")
    assert after.equals(before)  # run_id and created_at of earlier rows untouched too
    assert lake.version("raw/prompts") == version


def test_new_file_with_five_good_and_five_bad_rows(lake, inputs):
    materialize(lake, inputs)
    before = lake.read("raw/prompts").sort("prompt_id")
    shutil.copy(FIXTURES / "inputs" / "new_prompts.jsonl", Path(inputs.uri) / "new_prompts.jsonl")

    result = materialize(lake, inputs)
    assert result.success
    after = lake.read("raw/prompts")
    new = after.join(before.select("prompt_id"), on="prompt_id", how="anti")
    assert new.height == 5
    assert set(new["source"]) == {"new_prompts.jsonl"} and set(new["origin"]) == {"file"}
    rejects = lake.read("raw/rejects").sort("locator")
    assert sorted(rejects["locator"]) == sorted(f"new_prompts.jsonl:{n}" for n in range(6, 11))
    assert all(reason.startswith(loc) for loc, reason in zip(rejects["locator"], rejects["reason"]))
    assert set(rejects["reason_code"]) == {"missing_field", "empty_text", "too_long", "invalid_utf8", "unknown_domain"}
    unchanged = after.join(before, on="prompt_id", how="semi").sort("prompt_id")
    assert unchanged.equals(before)

    again = materialize(lake, inputs)
    assert metadata(again, "raw/prompts")["new_prompts"] == 0
    assert lake.read("raw/rejects").height == 5


def test_bad_corpus_in_the_input_folder_never_fails_the_run(lake, inputs):
    for path in (FIXTURES / "bad_inputs").iterdir():
        if path.name != "expected.json":
            shutil.copy(path, Path(inputs.uri) / path.name)
    expected = json.loads((FIXTURES / "bad_inputs" / "expected.json").read_text())
    result = materialize(lake, inputs, include_seed_pack=False, max_reject_rate=0.9)
    assert result.success
    rejects = lake.read("raw/rejects")
    assert dict(zip(rejects["locator"], rejects["reason_code"])) == expected["rejects"]
    assert lake.read("raw/prompts").height == expected["valid_rows"]
    assert metadata(result, "raw/rejects")["rejected_this_run"] == len(expected["rejects"])


def test_reject_rate_check_fails_above_threshold_without_failing_the_run(lake, inputs):
    shutil.copy(FIXTURES / "bad_inputs" / "rows.jsonl", Path(inputs.uri) / "rows.jsonl")
    result = materialize(lake, inputs, include_seed_pack=False, max_reject_rate=0.2)
    assert result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "reject_rate"]
    assert not check.passed


def test_files_config_selects_and_validates_names(lake, inputs):
    shutil.copy(FIXTURES / "inputs" / "new_prompts.jsonl", Path(inputs.uri) / "new_prompts.jsonl")
    result = materialize(lake, inputs, include_seed_pack=False, files=["new_prompts.jsonl"])
    assert lake.read("raw/prompts").height == 5 and result.success
    with pytest.raises(dg.Failure, match="missing.jsonl"):
        materialize(lake, inputs, files=["missing.jsonl"])


def test_generated_prompts_join_the_table_as_train(lake, inputs):
    materialize(lake, inputs, include_seed_pack=False, generated_per_cell=3, generator_seed=5)
    prompts = lake.read("raw/prompts")
    assert prompts.height == 24
    assert set(prompts["origin"]) == {"generated"} and set(prompts["split"]) == {"train"}


def test_symlink_out_of_the_input_folder_is_skipped(lake, inputs, tmp_path):
    outside = tmp_path / "secret.jsonl"
    outside.write_text('{"domain":"physics","task_type":"hypothesis","instruction":"Leaked row?"}\n')
    (Path(inputs.uri) / "link.jsonl").symlink_to(outside)
    result = materialize(lake, inputs, include_seed_pack=False)
    assert result.success
    assert lake.read("raw/prompts", missing_ok=True).height == 0


def test_unclosed_csv_quote_is_a_reject_and_the_rows_after_it_are_prompts(lake, inputs):
    # issue 13's reproduction: one accepted prompt holding both good rows, 0 rejects
    (Path(inputs.uri) / "mid.csv").write_bytes(
        b'domain,task_type,instruction,context\nphysics,hypothesis,"never closed quote,\n'
        b"biology,hypothesis,Good row one about enzyme kinetics,\nchemistry,methodology,Good row two,\n"
    )
    assert materialize(lake, inputs, include_seed_pack=False, max_reject_rate=0.9).success
    assert sorted(lake.read("raw/prompts")["instruction"]) == ["Good row one about enzyme kinetics", "Good row two"]
    rejects = lake.read("raw/rejects")
    assert rejects["locator"].to_list() == ["mid.csv:2"] and rejects["reason_code"].to_list() == ["invalid_csv"]


def test_rematerializing_unchanged_inputs_leaves_rejects_alone(lake, inputs):
    shutil.copy(FIXTURES / "bad_inputs" / "rows.jsonl", Path(inputs.uri) / "rows.jsonl")
    (Path(inputs.uri) / "noise.jsonl").write_bytes(bytes(range(256)) * 64)
    first = materialize(lake, inputs, include_seed_pack=False, max_reject_rate=0.9)
    before = lake.read("raw/rejects").sort("reject_id")
    version = lake.version("raw/rejects")
    assert before.height == 11 and set(before["run_id"]) == {first.run_id}

    again = materialize(lake, inputs, include_seed_pack=False, max_reject_rate=0.9)
    assert metadata(again, "raw/rejects")["rejected_this_run"] == 11
    assert lake.version("raw/rejects") == version  # issue 13: every run committed a MERGE rewriting all rejects
    assert len(lake.history("raw/rejects")) == version + 1
    assert lake.read("raw/rejects").sort("reject_id").equals(before)  # run_id and created_at untouched

    # A row whose content changes at the same line is the only reject a later run rewrites.
    edited = (FIXTURES / "bad_inputs" / "rows.jsonl").read_bytes().replace(b'"astrology"', b'"alchemy"')
    (Path(inputs.uri) / "rows.jsonl").write_bytes(edited)
    third = materialize(lake, inputs, include_seed_pack=False, max_reject_rate=0.9)
    after = lake.read("raw/rejects").sort("reject_id")
    assert after.filter(pl.col("run_id") == third.run_id)["locator"].to_list() == ["rows.jsonl:8"]
    assert "'alchemy'" in after.filter(pl.col("locator") == "rows.jsonl:8")["reason"][0]
    assert lake.version("raw/rejects") == version + 1


def test_lake_and_inputs_on_s3(s3_env):
    bucket = s3_env
    s3 = boto3.client("s3")
    s3.upload_file(str(FIXTURES / "inputs" / "new_prompts.jsonl"), bucket, "incoming/new_prompts.jsonl")
    lake = LakeResource(root=f"s3://{bucket}/lake")
    inputs = InputsResource(uri=f"s3://{bucket}/incoming")
    assert materialize(lake, inputs).success
    prompts = lake.read("raw/prompts")
    assert prompts.filter(pl.col("origin") == "file").height == 5
    rejects = lake.read("raw/rejects")
    assert rejects.height == 5
    assert all(loc.startswith(f"s3://{bucket}/incoming/new_prompts.jsonl:") for loc in rejects["locator"])
    assert materialize(lake, inputs).success
    assert lake.read("raw/prompts").height == prompts.height
