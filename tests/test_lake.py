"""LakeResource on a local folder: writes, merges, time travel, SQL views and concurrent writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake.exceptions import TableNotFoundError

from nexa_resources.lake import (
    LakeResource,
    Lineage,
    SqlAccessError,
    SqlLimitError,
    WriteMode,
    WriteResult,
    with_lineage,
)
from nexa_resources.lake_sql import parse_at
from nexa_resources.lake_sql import parse_version as _parse_version
from nexa_resources.tables import LINEAGE_COLUMNS, TABLES, table_spec

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
T1 = datetime(2026, 2, 3, 4, 5, 6, tzinfo=timezone.utc)


def prompts(ids, text: str = "t") -> pl.DataFrame:
    ids = list(ids)
    return pl.DataFrame({"prompt_id": [f"p{i}" for i in ids], "text": [f"{text}{i}" for i in ids]})


def by_key(df: pl.DataFrame, key: str = "prompt_id") -> pl.DataFrame:
    return df.sort(key)


# ----------------------------------------------------------------------------- writes and versions


def test_overwrite_append_merge_return_successive_versions(lake):
    r0 = lake.write("raw/prompts", prompts(range(3)), mode="overwrite", lineage=Lineage("run-0", 0, T0))
    r1 = lake.write("raw/prompts", prompts(range(3, 5)), mode=WriteMode.APPEND, lineage=Lineage("run-1", 1, T1))
    r2 = lake.write("raw/prompts", prompts(range(4, 7), "m"), mode="merge", lineage=Lineage("run-2", 2, T1))

    assert [r0.version, r1.version, r2.version] == [0, 1, 2]
    assert lake.version("raw/prompts") == 2
    assert (r0.mode, r1.mode, r2.mode) == (WriteMode.OVERWRITE, WriteMode.APPEND, WriteMode.MERGE)
    assert (r0.rows_in, r0.inserted) == (3, 3)
    assert (r1.rows_in, r1.inserted) == (2, 2)
    assert (r2.rows_in, r2.inserted, r2.updated) == (3, 2, 1)  # p4 updated; p5, p6 new

    df = by_key(lake.read("raw/prompts"))
    assert df["prompt_id"].to_list() == [f"p{i}" for i in range(7)]
    assert df["text"].to_list() == ["t0", "t1", "t2", "t3", "m4", "m5", "m6"]
    assert df["run_id"].to_list() == ["run-0"] * 3 + ["run-1"] + ["run-2"] * 3
    assert df["round"].to_list() == [0, 0, 0, 1, 2, 2, 2]
    assert df["created_at"].to_list() == [T0] * 3 + [T1] * 4


def test_lineage_columns_and_types(lake):
    lake.write("raw/prompts", prompts(range(2)), mode="overwrite", lineage=Lineage("run-x", 3, T0))
    df = lake.read("raw/prompts")
    assert set(LINEAGE_COLUMNS) <= set(df.columns)
    assert df.schema["run_id"] == pl.String
    assert df.schema["round"] == pl.Int64
    assert df.schema["created_at"] == pl.Datetime("us", "UTC")
    assert df["run_id"].unique().to_list() == ["run-x"]
    assert df["round"].unique().to_list() == [3]
    assert df["created_at"].unique().to_list() == [T0]


def test_with_lineage_overwrites_existing_columns_and_defaults_to_now():
    before = datetime.now(timezone.utc)
    lineage = Lineage("r")
    after = datetime.now(timezone.utc)
    assert lineage.round == 0
    assert before <= lineage.created_at <= after
    stale = pl.DataFrame({"x": [1, 2], "run_id": ["old", "old"], "round": [9, 9]})
    df = with_lineage(stale, Lineage("new", 4, T0))
    assert df.columns == ["x", "run_id", "round", "created_at"]
    assert df["run_id"].to_list() == ["new", "new"]
    assert df["round"].to_list() == [4, 4]
    assert df["created_at"].to_list() == [T0, T0]


def test_lineage_from_context():
    context = SimpleNamespace(run=SimpleNamespace(run_id="dagster-run-42"))
    lineage = Lineage.from_context(context, round=2)
    assert (lineage.run_id, lineage.round) == ("dagster-run-42", 2)
    assert lineage.created_at.tzinfo is not None


def test_write_without_lineage_adds_no_lineage_columns(lake):
    lake.write("raw/prompts", prompts(range(2)), mode="overwrite")
    assert lake.read("raw/prompts").columns == ["prompt_id", "text"]


def test_overwrite_replaces_rows_and_schema(lake):
    lake.write("raw/prompts", prompts(range(5)), mode="overwrite")
    result = lake.write("raw/prompts", pl.DataFrame({"prompt_id": ["z"], "n": [1]}), mode="overwrite")
    assert result.version == 1
    df = lake.read("raw/prompts")
    assert df.columns == ["prompt_id", "n"]
    assert df.to_dicts() == [{"prompt_id": "z", "n": 1}]


def test_append_evolves_schema(lake):
    lake.write("raw/prompts", prompts(range(2)), mode="append")
    lake.write("raw/prompts", prompts(range(2, 3)).with_columns(pl.lit(7).alias("score")), mode="append")
    df = by_key(lake.read("raw/prompts"))
    assert df["score"].to_list() == [None, None, 7]
    assert df.height == 3


def test_read_columns_subset(lake):
    lake.write("raw/prompts", prompts(range(3)), mode="overwrite", lineage=Lineage("r"))
    df = lake.read("raw/prompts", columns=["prompt_id", "run_id"])
    assert df.columns == ["prompt_id", "run_id"]
    assert df.height == 3


def test_partitioned_write_round_trips(lake, tmp_path):
    df = pl.DataFrame({"prompt_id": ["a", "b", "c"], "domain": ["math", "code", "math"]})
    lake.write("raw/prompts", df, mode="overwrite", partition_by=["domain"])
    assert (tmp_path / "lake" / "raw" / "prompts" / "domain=math").is_dir()
    back = by_key(lake.read("raw/prompts"))
    assert back.select("prompt_id", "domain").to_dicts() == by_key(df).to_dicts()


def test_write_result_metadata():
    result = WriteResult("raw/prompts", WriteMode.MERGE, 3, rows_in=10, inserted=4, updated=6, deleted=1)
    assert result.metadata() == {
        "table": "raw/prompts",
        "delta_version": 3,
        "write_mode": "merge",
        "rows_in": 10,
        "rows_inserted": 4,
        "rows_updated": 6,
        "rows_deleted": 1,
    }


def test_merge_can_delete_rows_missing_from_the_source(lake):
    lake.write("sft/examples", pl.DataFrame({"example_id": ["a", "b", "c"], "v": [1, 2, 3]}), mode="merge",
               lineage=Lineage("r1"))
    result = lake.write("sft/examples", pl.DataFrame({"example_id": ["b", "c", "d"], "v": [2, 3, 4]}),
                        mode="merge", lineage=Lineage("r2"), update_matched=False, delete_unmatched=True)
    assert (result.inserted, result.updated, result.deleted) == (1, 0, 1)
    table = lake.read("sft/examples").sort("example_id")
    assert table["example_id"].to_list() == ["b", "c", "d"]
    assert table["run_id"].to_list() == ["r1", "r1", "r2"]  # unchanged rows keep their lineage


def test_delete_commits_a_version_tagged_with_the_run(lake):
    lake.write("raw/prompts", prompts(range(4)), mode="overwrite", lineage=Lineage("run-a"))
    result = lake.delete("raw/prompts", "prompt_id IN ('p1', 'p2')", lineage=Lineage("run-b"))
    assert (result.mode, result.version, result.deleted) == (WriteMode.DELETE, 1, 2)
    assert sorted(lake.read("raw/prompts")["prompt_id"].to_list()) == ["p0", "p3"]
    history = lake.history("raw/prompts")
    assert history[0]["operation"] == "DELETE"
    assert history[0].get("nexa.run_id") == "run-b"
    assert lake.delete("raw/prompts", "prompt_id = 'p9'").deleted == 0


def test_bad_write_mode(lake):
    with pytest.raises(ValueError):
        lake.write("raw/prompts", prompts(range(1)), mode="upsert")


# ------------------------------------------------------------------------------------------ merges


def test_merge_into_missing_table_creates_it(lake):
    assert not lake.exists("raw/prompts")
    result = lake.write("raw/prompts", prompts(range(4)), mode="merge", lineage=Lineage("r0"))
    assert (result.version, result.inserted, result.updated) == (0, 4, 0)
    assert lake.exists("raw/prompts")
    assert lake.read("raw/prompts").height == 4


def test_merge_same_rows_is_idempotent_without_update(lake):
    first = lake.write("raw/prompts", prompts(range(5)), mode="merge", lineage=Lineage("run-a", 1, T0))
    before = by_key(lake.read("raw/prompts"))

    again = lake.write(
        "raw/prompts", prompts(range(5), "changed"), mode="merge", lineage=Lineage("run-b", 2, T1),
        update_matched=False,
    )
    assert (again.inserted, again.updated) == (0, 0)
    assert again.version >= first.version
    after = by_key(lake.read("raw/prompts"))
    assert after.equals(before)  # text, run_id, round and created_at all untouched
    assert after["run_id"].unique().to_list() == ["run-a"]
    assert after["created_at"].unique().to_list() == [T0]


def test_merge_without_update_inserts_only_new_keys(lake):
    lake.write("raw/prompts", prompts(range(3)), mode="merge", lineage=Lineage("run-a", 0, T0))
    result = lake.write(
        "raw/prompts", prompts(range(2, 5), "new"), mode="merge", lineage=Lineage("run-b", 1, T1),
        update_matched=False,
    )
    assert (result.inserted, result.updated) == (2, 0)
    df = by_key(lake.read("raw/prompts"))
    assert df["text"].to_list() == ["t0", "t1", "t2", "new3", "new4"]
    assert df["run_id"].to_list() == ["run-a"] * 3 + ["run-b"] * 2


def test_merge_same_rows_twice_with_update_keeps_row_count(lake):
    rows = prompts(range(6))
    lake.write("raw/prompts", rows, mode="merge", lineage=Lineage("r", 0, T0))
    result = lake.write("raw/prompts", rows, mode="merge", lineage=Lineage("r", 0, T0))
    assert result.inserted == 0
    df = by_key(lake.read("raw/prompts"))
    assert df.height == 6
    assert df.select("prompt_id", "text").equals(by_key(rows))


def test_merge_with_update_replaces_changed_rows(lake):
    lake.write("raw/prompts", prompts(range(4)), mode="merge", lineage=Lineage("run-a", 0, T0))
    changed = pl.DataFrame({"prompt_id": ["p1", "p3"], "text": ["NEW1", "NEW3"]})
    result = lake.write("raw/prompts", changed, mode="merge", lineage=Lineage("run-b", 1, T1), update_matched=True)
    assert (result.version, result.inserted, result.updated) == (1, 0, 2)
    df = by_key(lake.read("raw/prompts"))
    assert df["text"].to_list() == ["t0", "NEW1", "t2", "NEW3"]
    assert df["run_id"].to_list() == ["run-a", "run-b", "run-a", "run-b"]
    assert df["round"].to_list() == [0, 1, 0, 1]
    assert df["created_at"].to_list() == [T0, T1, T0, T1]


def test_merge_updating_only_changed_rows_keeps_lineage_and_skips_empty_commits(lake):
    lake.write("raw/prompts", prompts(range(4)), mode="merge", lineage=Lineage("run-a", 0, T0))
    same = lake.write("raw/prompts", prompts(range(4)), mode="merge", lineage=Lineage("run-b", 1, T1),
                      update_if_changed=["text"])
    assert (same.version, same.inserted, same.updated) == (0, 0, 0)  # nothing differs: no commit
    assert len(lake.history("raw/prompts")) == 1
    rows = prompts(range(5)).with_columns(pl.when(pl.col("prompt_id") == "p1").then(pl.lit("NEW")).otherwise("text").alias("text"))
    result = lake.write("raw/prompts", rows, mode="merge", lineage=Lineage("run-c", 2, T1), update_if_changed=["text"])
    assert (result.version, result.inserted, result.updated) == (1, 1, 1)
    df = by_key(lake.read("raw/prompts"))
    assert df["run_id"].to_list() == ["run-a", "run-c", "run-a", "run-a", "run-c"]
    assert df["created_at"].to_list() == [T0, T1, T0, T0, T1]


def test_merge_with_new_columns_evolves_schema(lake):
    lake.write("raw/prompts", prompts(range(3)), mode="merge", lineage=Lineage("r"))
    extra = prompts(range(2, 4), "x").with_columns(pl.Series("difficulty", [0.5, 0.9]))
    result = lake.write("raw/prompts", extra, mode="merge", lineage=Lineage("r"))
    assert (result.inserted, result.updated) == (1, 1)
    df = by_key(lake.read("raw/prompts"))
    assert "difficulty" in df.columns
    assert df["difficulty"].to_list() == [None, None, 0.5, 0.9]
    assert df["text"].to_list() == ["t0", "t1", "x2", "x3"]


def test_merge_with_new_columns_without_update(lake):
    lake.write("raw/prompts", prompts(range(2)), mode="merge")
    extra = prompts(range(1, 3), "x").with_columns(pl.Series("difficulty", [1.0, 2.0]))
    lake.write("raw/prompts", extra, mode="merge", update_matched=False)
    df = by_key(lake.read("raw/prompts"))
    assert df["text"].to_list() == ["t0", "t1", "x2"]
    assert df["difficulty"].to_list() == [None, None, 2.0]


def test_merge_dedupes_source_keys_keeping_last(lake):
    dupes = pl.DataFrame({"prompt_id": ["a", "b", "a", "a"], "text": ["1", "2", "3", "4"]})
    result = lake.write("raw/prompts", dupes, mode="merge")
    assert (result.rows_in, result.inserted) == (2, 2)
    assert by_key(lake.read("raw/prompts")).to_dicts() == [
        {"prompt_id": "a", "text": "4"},
        {"prompt_id": "b", "text": "2"},
    ]
    # into an existing table as well: one row per key, the last one wins
    more = pl.DataFrame({"prompt_id": ["b", "c", "b", "c"], "text": ["5", "6", "7", "8"]})
    result = lake.write("raw/prompts", more, mode="merge")
    assert (result.rows_in, result.inserted, result.updated) == (2, 1, 1)
    assert by_key(lake.read("raw/prompts"))["text"].to_list() == ["4", "7", "8"]


def test_merge_on_composite_registry_keys(lake):
    rows = pl.DataFrame(
        {"model_id": ["m1", "m1", "m2"], "prompt_id": ["a", "b", "a"], "prediction": ["x", "y", "z"]}
    )
    lake.write("eval/predictions", rows, mode="merge")
    update = pl.DataFrame({"model_id": ["m2", "m2"], "prompt_id": ["a", "b"], "prediction": ["Z", "W"]})
    result = lake.write("eval/predictions", update, mode="merge")
    assert (result.inserted, result.updated) == (1, 1)
    df = lake.read("eval/predictions").sort("model_id", "prompt_id")
    assert df["prediction"].to_list() == ["x", "y", "Z", "W"]


def test_merge_with_explicit_keys_on_unregistered_table(lake):
    rows = pl.DataFrame({"k": [1, 2, 3], "v": ["a", "b", "c"]})
    lake.write("scratch/things", rows, mode="merge", keys=["k"])
    lake.write("scratch/things", pl.DataFrame({"k": [3, 4], "v": ["C", "d"]}), mode="merge", keys=["k"])
    assert lake.read("scratch/things").sort("k")["v"].to_list() == ["a", "b", "C", "d"]


def test_merge_needs_keys(lake):
    with pytest.raises(ValueError, match="needs key columns"):
        lake.write("scratch/things", pl.DataFrame({"k": [1]}), mode="merge")
    with pytest.raises(ValueError, match=r"key columns \['prompt_id'\] are not in the rows"):
        lake.write("raw/prompts", pl.DataFrame({"k": [1]}), mode="merge")
    assert not lake.exists("raw/prompts")


# ------------------------------------------------------------------------------------- time travel


def test_read_at_each_version(lake):
    lake.write("raw/prompts", prompts(range(2)), mode="overwrite")
    lake.write("raw/prompts", prompts(range(2, 5)), mode="append")
    lake.write("raw/prompts", prompts(range(1), "u"), mode="merge")
    assert lake.read("raw/prompts", version=0).height == 2
    assert lake.read("raw/prompts", version=1).height == 5
    assert lake.read("raw/prompts", version="1").height == 5  # CLI-style string version
    assert by_key(lake.read("raw/prompts", version=1))["text"][0] == "t0"
    assert by_key(lake.read("raw/prompts", version=2))["text"][0] == "u0"
    assert by_key(lake.read("raw/prompts"))["text"][0] == "u0"
    assert lake.delta_table("raw/prompts", 1).version() == 1


def test_read_at_missing_version_fails(lake):
    lake.write("raw/prompts", prompts(range(2)), mode="overwrite")
    with pytest.raises(Exception):
        lake.read("raw/prompts", version=7)


def test_read_at_timestamp(lake):
    lake.write("raw/prompts", prompts(range(2)), mode="overwrite")
    time.sleep(0.05)
    lake.write("raw/prompts", prompts(range(2, 4)), mode="append")
    history = {h["version"]: h["timestamp"] for h in lake.history("raw/prompts")}
    t0 = datetime.fromtimestamp(history[0] / 1000, tz=timezone.utc)
    t1 = datetime.fromtimestamp(history[1] / 1000, tz=timezone.utc)
    assert t0 < t1

    # ISO strings with a Z suffix and with an offset, and a datetime
    iso_z = t0.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    assert lake.read("raw/prompts", version=iso_z).height == 2
    assert lake.read("raw/prompts", version=t0.isoformat()).height == 2
    assert lake.read("raw/prompts", version=t0).height == 2
    # a naive ISO timestamp is read as UTC
    naive = t1.replace(tzinfo=None).isoformat()
    assert lake.read("raw/prompts", version=naive).height == 4
    later = (t1 + timedelta(hours=1)).isoformat()
    assert lake.read("raw/prompts", version=later).height == 4


def test_history_newest_first_with_run_id(lake):
    lake.write("raw/prompts", prompts(range(2)), mode="overwrite", lineage=Lineage("run-a"))
    lake.write("raw/prompts", prompts(range(2, 3)), mode="append", lineage=Lineage("run-b"))
    lake.write("raw/prompts", prompts(range(3, 4)), mode="merge", lineage=Lineage("run-c"))
    lake.write("raw/prompts", prompts(range(4, 5)), mode="append")  # no lineage: no run id
    history = lake.history("raw/prompts")
    assert [h["version"] for h in history] == [3, 2, 1, 0]
    assert [h.get("nexa.run_id") for h in history] == [None, "run-c", "run-b", "run-a"]
    assert history[1]["operation"] == "MERGE"
    timestamps = [h["timestamp"] for h in history]
    assert timestamps == sorted(timestamps, reverse=True)
    assert [h["version"] for h in lake.history("raw/prompts", limit=2)] == [3, 2]


# ------------------------------------------------------------------------------------------ DuckDB


def _fill(lake: LakeResource) -> None:
    lake.write("raw/prompts", prompts(range(3)), mode="overwrite", lineage=Lineage("r0"))
    lake.write("raw/prompts", prompts(range(3, 5)), mode="append", lineage=Lineage("r1"))
    metrics = pl.DataFrame(
        {
            "model_id": ["m1", "m1", "m2"],
            "domain": ["math", "code", "math"],
            "task_type": ["qa", "qa", "qa"],
            "metric": ["acc", "acc", "acc"],
            "value": [0.5, 0.25, 0.75],
        }
    )
    lake.write("eval/metrics", metrics, mode="merge")
    lake.write("scratch/things", pl.DataFrame({"k": [1]}), mode="overwrite")


def test_connect_has_a_view_per_table(lake):
    _fill(lake)
    con = lake.connect()
    try:
        views = set(
            con.sql(
                "SELECT schema_name || '.' || view_name FROM duckdb_views() WHERE NOT internal AND schema_name <> 'main'"
            ).fetchall()
        )
        assert {v for (v,) in views} == {"raw.prompts", "eval.metrics", "scratch.things"}
        assert con.sql("SELECT count(*) FROM raw.prompts").fetchall() == [(5,)]
        assert con.sql("SELECT count(*) FROM scratch.things").fetchall() == [(1,)]
        best = con.sql(
            "SELECT model_id, avg(value) AS v FROM eval.metrics GROUP BY model_id ORDER BY v DESC"
        ).fetchall()
        assert best == [("m2", 0.75), ("m1", 0.375)]
        joined = con.sql('SELECT count(*) FROM raw.prompts p JOIN "eval"."metrics" m ON true').fetchall()
        assert joined == [(15,)]
    finally:
        con.close()


def test_connect_at_old_version(lake):
    _fill(lake)
    for at in ({"raw/prompts": 0}, {"raw.prompts": "0"}):
        con = lake.connect(at=at)
        try:
            assert con.sql("SELECT count(*) FROM raw.prompts").fetchall() == [(3,)]
            assert con.sql("SELECT count(*) FROM eval.metrics").fetchall() == [(3,)]
        finally:
            con.close()
    table = lake.sql("SELECT count(*) AS n FROM raw.prompts", at={"raw/prompts": 1})
    assert table.column("n").to_pylist() == [5]


def test_connect_at_unknown_table_lists_tables(lake):
    _fill(lake)
    with pytest.raises(ValueError, match=r"raw/rejects.*raw\.prompts.*eval\.metrics"):
        lake.connect(at={"raw/rejects": 0})
    with pytest.raises(ValueError, match="unknown table"):
        lake.connect(at={"nope": 0})


def test_sql_returns_arrow(lake):
    _fill(lake)
    result = lake.sql("SELECT prompt_id, run_id FROM raw.prompts ORDER BY prompt_id")
    assert isinstance(result, pa.Table)
    assert result.column("prompt_id").to_pylist() == ["p0", "p1", "p2", "p3", "p4"]
    assert result.column("run_id").to_pylist() == ["r0"] * 3 + ["r1"] * 2


def test_sql_on_empty_lake(lake):
    assert lake.sql("SELECT 42 AS answer").column("answer").to_pylist() == [42]


def test_sql_refuses_file_reads(lake, tmp_path):
    _fill(lake)
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    for query in (
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM '{secret}'",
        f"SELECT * FROM read_parquet('{tmp_path}/lake/raw/prompts/*.parquet')",
    ):
        with pytest.raises(SqlAccessError) as info:
            lake.sql(query)
        message = str(info.value)
        assert "external file access is disabled" in message
        assert "raw.prompts" in message and "eval.metrics" in message


def test_sql_refuses_copy_to_file(lake, tmp_path):
    _fill(lake)
    target = tmp_path / "out.csv"
    with pytest.raises(SqlAccessError):
        lake.sql(f"COPY (SELECT * FROM raw.prompts) TO '{target}'")
    with pytest.raises(SqlAccessError):
        lake.sql("COPY (SELECT 1) TO '/tmp/nexa_should_not_exist.csv'")
    assert not target.exists()
    assert not Path("/tmp/nexa_should_not_exist.csv").exists()


def test_sql_cannot_reenable_external_access(lake):
    _fill(lake)
    for query in (
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET enable_external_access",
    ):
        with pytest.raises(duckdb.Error, match="locked"):
            lake.sql(query)
    con = lake.connect()
    try:
        with pytest.raises(duckdb.Error):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.PermissionException):
            con.sql("SELECT * FROM read_csv('/etc/passwd')").fetchall()
        # the lake views still work afterwards
        assert con.sql("SELECT count(*) FROM raw.prompts").fetchall() == [(5,)]
    finally:
        con.close()


def test_sql_cannot_attach_files(lake, tmp_path):
    _fill(lake)
    with pytest.raises(SqlAccessError):
        lake.sql(f"ATTACH '{tmp_path / 'other.duckdb'}' AS other")
    assert not (tmp_path / "other.duckdb").exists()


def test_sql_cannot_use_duckdbs_temp_folder(lake, tmp_path, monkeypatch):
    # issue 13: DuckDB allowed its temp folder `<cwd>/.tmp/`, so these all worked when it existed
    _fill(lake)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "w.csv").write_text("a\nx\n")
    for query in (
        "COPY (SELECT 'x' a) TO '.tmp/w2.csv'",
        "ATTACH '.tmp/evil.db' AS evil; CREATE TABLE evil.t AS SELECT 1",
        "SELECT * FROM read_text('.tmp/w.csv')",
        f"SELECT * FROM read_text('{tmp_path}/.tmp/w.csv')",
    ):
        with pytest.raises(SqlAccessError, match="external file access is disabled"):
            lake.sql(query)
    assert sorted(p.name for p in (tmp_path / ".tmp").iterdir()) == ["w.csv"]
    settings = lake.sql(
        "SELECT current_setting('temp_directory') AS temp, current_setting('allowed_directories') AS dirs"
    ).to_pylist()
    assert settings == [{"temp": "", "dirs": []}]


@pytest.mark.parametrize(
    "query",
    [
        "FROM '/etc/passwd'",
        'SELECT * FROM "/etc/passwd"',
        "FROM 'notes.txt'",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_blob('/etc/hostname')",
        "EXPORT DATABASE '/tmp/nexa_export_should_not_exist'",
        "INSTALL httpfs",
    ],
)
def test_sql_every_file_like_reference_gets_the_access_message(lake, query):
    _fill(lake)
    with pytest.raises(SqlAccessError) as info:
        lake.sql(query)
    assert "external file access is disabled" in str(info.value)
    assert "Views: raw.prompts, eval.metrics, scratch.things" in str(info.value)


def test_sql_unknown_view_lists_the_views(lake):
    _fill(lake)
    with pytest.raises(duckdb.CatalogException, match="Lake views: raw.prompts, eval.metrics, scratch.things"):
        lake.sql("SELECT * FROM raw.promptz")


def test_sql_runaway_query_is_interrupted_and_the_lake_still_answers(lake):
    _fill(lake)
    runaway = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b"  # issue 13
    configured = lake.model_copy(update={"sql_timeout_s": 0.5})
    for limited in (lambda: lake.sql(runaway, timeout_s=0.5), lambda: configured.sql(runaway)):
        started = time.monotonic()
        with pytest.raises(SqlLimitError, match=r"query stopped after 0.5 s.*NEXA_SQL_TIMEOUT_S.*--timeout"):
            limited()
        assert time.monotonic() - started < 10
    assert lake.sql("SELECT count(*) AS n FROM raw.prompts").column("n").to_pylist() == [5]


def test_sql_memory_is_capped(lake):
    _fill(lake)
    assert lake.sql("SELECT current_setting('memory_limit') AS m").column("m").to_pylist() == ["953.6 MiB"]  # 1GB
    small = LakeResource(root=lake.root, sql_memory_limit="40MB")
    with pytest.raises(SqlLimitError, match="more than 40MB of memory.*NEXA_SQL_MEMORY_LIMIT"):
        small.sql("SELECT count(*) FROM (SELECT range, md5(range::varchar) AS h FROM range(5000000) ORDER BY h)")
    with pytest.raises(ValueError, match="bad SQL memory limit 'lots'.*512MB"):
        LakeResource(root=lake.root, sql_memory_limit="lots").sql("SELECT 1")


def test_sql_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("NEXA_SQL_TIMEOUT_S", "5")
    monkeypatch.setenv("NEXA_SQL_MEMORY_LIMIT", "256MB")
    lake = LakeResource.from_env()
    assert (lake.sql_timeout_s, lake.sql_memory_limit) == (5.0, "256MB")
    monkeypatch.setenv("NEXA_SQL_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="NEXA_SQL_TIMEOUT_S='soon': expected seconds"):
        LakeResource.from_env()
    monkeypatch.delenv("NEXA_SQL_TIMEOUT_S")
    monkeypatch.delenv("NEXA_SQL_MEMORY_LIMIT")
    assert (LakeResource.from_env().sql_timeout_s, LakeResource.from_env().sql_memory_limit) == (30.0, "1GB")


def test_unsafe_connect_can_read_files(lake, tmp_path):
    _fill(lake)
    csv = tmp_path / "x.csv"
    csv.write_text("a\n1\n2\n")
    con = lake.connect(safe=False)
    try:
        assert con.sql(f"SELECT count(*) FROM read_csv('{csv}')").fetchall() == [(2,)]
    finally:
        con.close()


# ---------------------------------------------------------------------- names and missing tables


def test_tables_lists_registry_and_unregistered_tables(lake, tmp_path):
    assert lake.tables() == []
    _fill(lake)
    (tmp_path / "lake" / "not-a-layer" / "x" / "_delta_log").mkdir(parents=True)
    (tmp_path / "lake" / "raw" / "no_log").mkdir(parents=True)
    paths = [spec.path for spec in lake.tables()]
    assert sorted(paths) == ["eval/metrics", "raw/prompts", "scratch/things"]
    spec = next(s for s in lake.tables() if s.path == "raw/prompts")
    assert spec is TABLES["raw/prompts"]


def test_table_spec_lookup():
    assert table_spec("raw.prompts") is TABLES["raw/prompts"]
    assert table_spec("eval/metrics").keys == ("model_id", "domain", "task_type", "metric")
    scratch = table_spec("scratch.things")
    assert (scratch.layer, scratch.name, scratch.keys, scratch.sql_name) == ("scratch", "things", (), "scratch.things")


@pytest.mark.parametrize("name", ["prompts", "raw/prompts/extra", "raw/bad-name", "1raw/x", "", "/x"])
def test_unknown_table_names_list_valid_ones(lake, name):
    with pytest.raises(ValueError) as info:
        table_spec(name)
    message = str(info.value)
    assert "unknown table" in message
    assert "raw/prompts" in message and "eval/metrics" in message
    with pytest.raises(ValueError, match="unknown table"):
        lake.read(name)
    with pytest.raises(ValueError, match="unknown table"):
        lake.write(name, prompts(range(1)), mode="overwrite")


def test_read_missing_table_says_to_materialize(lake):
    with pytest.raises(TableNotFoundError) as info:
        lake.read("raw/rejects")
    message = str(info.value)
    assert "'raw/rejects'" in message
    assert "materialize" in message
    assert "none yet" in message

    _fill(lake)
    with pytest.raises(TableNotFoundError) as info:
        lake.read("raw/rejects")
    assert "raw/prompts" in str(info.value)  # names the tables that do exist
    with pytest.raises(TableNotFoundError, match="materialize"):
        lake.history("raw/rejects")


def test_missing_ok_returns_empty_frame(lake):
    df = lake.read("raw/rejects", missing_ok=True)
    assert isinstance(df, pl.DataFrame)
    assert df.is_empty()
    assert lake.version("raw/rejects") is None
    assert not lake.exists("raw/rejects")


# ------------------------------------------------------------------------------- parsing versions


def test_parse_version():
    assert _parse_version(3) == 3
    assert _parse_version("3") == 3
    assert _parse_version(" 12 ") == 12
    assert _parse_version(T0) is T0
    assert _parse_version("2026-11-22T10:00:00Z") == datetime(2026, 11, 22, 10, tzinfo=timezone.utc)
    assert _parse_version("2026-11-22T10:00:00") == datetime(2026, 11, 22, 10, tzinfo=timezone.utc)
    plus_two = _parse_version("2026-11-22T12:00:00+02:00")
    assert plus_two == datetime(2026, 11, 22, 10, tzinfo=timezone.utc)


@pytest.mark.parametrize("bad", ["", "latest", "-1", "1.5", "v3", "2026-13-40", "yesterday"])
def test_parse_version_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="bad version") as info:
        _parse_version(bad)
    assert "ISO timestamp" in str(info.value)


def test_read_with_bad_version_string(lake):
    lake.write("raw/prompts", prompts(range(1)), mode="overwrite")
    with pytest.raises(ValueError, match="bad version"):
        lake.read("raw/prompts", version="last week")


def test_parse_at():
    assert parse_at([]) == {}
    assert parse_at(["raw.prompts=3", "eval/metrics=2026-11-22T10:00:00Z"]) == {
        "raw/prompts": "3",
        "eval/metrics": "2026-11-22T10:00:00Z",
    }


@pytest.mark.parametrize("bad", ["raw.prompts", "raw.prompts=", "=3", "="])
def test_parse_at_rejects_bad_items(bad):
    with pytest.raises(ValueError, match="expected layer.table=VERSION"):
        parse_at([bad])


def test_parse_at_rejects_unknown_table():
    with pytest.raises(ValueError, match="unknown table"):
        parse_at(["prompts=3"])


# ------------------------------------------------------------------------------ concurrent writers

_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import polars as pl
    from nexa_resources.lake import LakeResource, Lineage

    root, worker, sync, races = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    lake = LakeResource(root=root)

    def together(step):
        # say ready, then spin until the other worker is too, so that both write at the same moment
        (sync / f"{step}-{worker}").touch()
        deadline = time.monotonic() + 60
        while not (sync / f"{step}-{1 - worker}").exists() and time.monotonic() < deadline:
            pass

    # both create the same new tables with the same keys, worker 1 a little later each time (the
    # riskiest moment is the other's commit landing between our exists() check and our write)
    for t in range(races):
        together(f"race{t}")
        if worker == 1:
            time.sleep(t * 0.0005)
        rows = pl.DataFrame({"k": list(range(10)), "w": [worker] * 10})
        lake.write(f"scratch/race{t}", rows, mode="merge", keys=["k"])

    together("merges")
    for i in range(20):
        # 10 keys per merge, overlapping this worker's previous merge by 5 and the other worker's
        # concurrent merge by 7, so both race to update the same rows
        ids = [worker * 3 + i * 5 + j for j in range(10)]
        rows = pl.DataFrame({"prompt_id": [f"k{n:04d}" for n in ids], "text": [f"w{worker}-{i}"] * 10})
        lake.write("raw/prompts", rows, mode="merge", lineage=Lineage(f"worker-{worker}", i))
    print("done", worker)
    """
)


def test_two_processes_merging_concurrently_lose_nothing(lake, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    sync = tmp_path / "sync"
    sync.mkdir()
    races = 8
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), lake.root, str(worker), str(sync), str(races)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in (0, 1)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
        assert "done" in out

    for t in range(races):
        race = lake.read(f"scratch/race{t}")
        assert sorted(race["k"].to_list()) == list(range(10)), f"scratch/race{t} lost or duplicated keys"
        assert lake.version(f"scratch/race{t}") == 1  # one create and one merge, nothing else

    expected = {f"k{worker * 3 + i * 5 + j:04d}" for worker in (0, 1) for i in range(20) for j in range(10)}
    df = lake.read("raw/prompts")
    assert df["prompt_id"].n_unique() == df.height  # no duplicate keys
    assert set(df["prompt_id"]) == expected
    assert df.height == len(expected) == 108
    # every write is a commit of its own
    assert lake.version("raw/prompts") == 39


def test_merge_creating_a_table_another_writer_just_created_does_not_duplicate(lake, monkeypatch):
    """The race of two first merges: exists() said no, but the table is there by the time we write."""
    lake.write("raw/prompts", prompts(range(5)), mode="merge", lineage=Lineage("first", 0, T0))
    real_exists = LakeResource.exists
    calls = {"n": 0}

    def stale_exists(self, table):
        calls["n"] += 1
        return False if calls["n"] == 1 else real_exists(self, table)

    monkeypatch.setattr(LakeResource, "exists", stale_exists)
    result = lake.write("raw/prompts", prompts(range(3, 8), "second"), mode="merge", lineage=Lineage("second", 1, T1))
    monkeypatch.undo()

    assert (result.mode, result.version, result.inserted, result.updated) == (WriteMode.MERGE, 1, 3, 2)
    df = by_key(lake.read("raw/prompts"))
    assert df["prompt_id"].to_list() == [f"p{i}" for i in range(8)]
    assert df["text"].to_list() == ["t0", "t1", "t2", "second3", "second4", "second5", "second6", "second7"]
    assert lake.version("raw/prompts") == 1
