"""The same lake on S3 (moto's server in a child process), configured only by the environment."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import boto3
import polars as pl
import pytest
from deltalake.exceptions import TableNotFoundError

from nexa_resources.lake import LakeResource, Lineage, SqlAccessError, storage_options_from_env

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def prompts(ids, text: str = "t") -> pl.DataFrame:
    ids = list(ids)
    return pl.DataFrame({"prompt_id": [f"p{i}" for i in ids], "text": [f"{text}{i}" for i in ids]})


def test_s3_lake_is_remote(s3_lake, s3_env):
    assert s3_lake.is_remote
    assert s3_lake.uri("raw.prompts") == f"s3://{s3_env}/lake/raw/prompts"
    assert s3_lake.storage_options() == storage_options_from_env()
    assert LakeResource(root=f"s3://{s3_env}/lake/").uri("raw/prompts") == f"s3://{s3_env}/lake/raw/prompts"


def test_write_merge_read_round_trip(s3_lake, s3_env):
    r0 = s3_lake.write("raw/prompts", prompts(range(4)), mode="overwrite", lineage=Lineage("run-a", 1, T0))
    r1 = s3_lake.write("raw/prompts", prompts(range(4, 6)), mode="append", lineage=Lineage("run-b", 2, T0))
    r2 = s3_lake.write("raw/prompts", prompts(range(3, 8), "m"), mode="merge", lineage=Lineage("run-c", 3, T0))
    again = s3_lake.write(
        "raw/prompts", prompts(range(3, 8), "x"), mode="merge", lineage=Lineage("run-d"), update_matched=False
    )
    assert [r.version for r in (r0, r1, r2)] == [0, 1, 2]
    assert (r2.inserted, r2.updated) == (2, 3)
    assert (again.inserted, again.updated) == (0, 0)

    df = s3_lake.read("raw/prompts").sort("prompt_id")
    assert df["prompt_id"].to_list() == [f"p{i}" for i in range(8)]
    assert df["text"].to_list() == ["t0", "t1", "t2", "m3", "m4", "m5", "m6", "m7"]
    assert df["run_id"].to_list() == ["run-a"] * 3 + ["run-c"] * 5
    assert df["round"].to_list() == [1, 1, 1, 3, 3, 3, 3, 3]
    assert df["created_at"].unique().to_list() == [T0]

    # the objects really are in the bucket
    s3 = boto3.client("s3")  # endpoint and keys from the environment
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_env, Prefix="lake/raw/prompts/")["Contents"]]
    assert "lake/raw/prompts/_delta_log/00000000000000000000.json" in keys
    assert any(k.endswith(".parquet") for k in keys)


def test_time_travel_and_history(s3_lake):
    s3_lake.write("raw/prompts", prompts(range(2)), mode="overwrite", lineage=Lineage("run-a"))
    # Both commits land within the same second: timestamps resolve through the log's commit times
    # (milliseconds), not S3's whole-second LastModified.
    s3_lake.write("raw/prompts", prompts(range(2, 5)), mode="append", lineage=Lineage("run-b"))
    assert s3_lake.version("raw/prompts") == 1
    assert s3_lake.read("raw/prompts", version=0).height == 2
    assert s3_lake.read("raw/prompts", version="1").height == 5

    history = s3_lake.history("raw/prompts")
    assert [h["version"] for h in history] == [1, 0]
    assert [h["nexa.run_id"] for h in history] == ["run-b", "run-a"]
    t1 = datetime.fromtimestamp(history[0]["timestamp"] / 1000, tz=timezone.utc)
    assert s3_lake.read("raw/prompts", version=(t1 - timedelta(milliseconds=1)).isoformat()).height == 2
    assert s3_lake.read("raw/prompts", version=t1.isoformat()).height == 5


def test_tables_and_missing_tables(s3_lake):
    assert s3_lake.tables() == []
    assert s3_lake.version("raw/prompts") is None
    assert s3_lake.read("raw/prompts", missing_ok=True).is_empty()
    with pytest.raises(TableNotFoundError, match=r"'raw/prompts'.*none yet.*materialize"):
        s3_lake.read("raw/prompts")

    metrics = pl.DataFrame(
        {"model_id": ["m"], "domain": ["math"], "task_type": ["qa"], "metric": ["acc"], "value": [0.5]}
    )
    s3_lake.write("eval/metrics", metrics, mode="merge")
    s3_lake.write("raw/prompts", prompts(range(3)), mode="merge")
    assert sorted(spec.path for spec in s3_lake.tables()) == ["eval/metrics", "raw/prompts"]
    assert s3_lake.exists("raw/prompts") and not s3_lake.exists("raw/rejects")
    with pytest.raises(TableNotFoundError, match=r"'raw/rejects'.*raw/prompts.*materialize"):
        s3_lake.read("raw/rejects")


def test_connect_sql_over_s3_tables(s3_lake):
    s3_lake.write("raw/prompts", prompts(range(3)), mode="overwrite")
    s3_lake.write("raw/prompts", prompts(range(3, 6)), mode="append")
    metrics = pl.DataFrame(
        {"model_id": ["m1", "m2"], "domain": ["math"] * 2, "task_type": ["qa"] * 2, "metric": ["acc"] * 2,
         "value": [0.25, 0.75]}
    )
    s3_lake.write("eval/metrics", metrics, mode="merge")

    con = s3_lake.connect()
    try:
        assert con.sql("SELECT count(*) FROM raw.prompts").fetchall() == [(6,)]
        assert con.sql("SELECT max(value) FROM eval.metrics").fetchall() == [(0.75,)]
    finally:
        con.close()
    old = s3_lake.sql("SELECT count(*) AS n FROM raw.prompts", at={"raw.prompts": 0})
    assert old.column("n").to_pylist() == [3]
    with pytest.raises(SqlAccessError, match="raw.prompts"):
        s3_lake.sql("SELECT * FROM read_csv('/etc/passwd')")


def test_two_concurrent_writers_lose_nothing(s3_lake):
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def writer(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(8):
                # overlapping this writer's previous merge and the other writer's concurrent one
                ids = [worker * 3 + i * 5 + j for j in range(10)]
                rows = pl.DataFrame({"prompt_id": [f"k{n:04d}" for n in ids], "text": [f"w{worker}"] * 10})
                s3_lake.write("raw/prompts", rows, mode="merge", lineage=Lineage(f"w{worker}", i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "writers hung"
    assert not errors, errors

    expected = {f"k{w * 3 + i * 5 + j:04d}" for w in (0, 1) for i in range(8) for j in range(10)}
    df = s3_lake.read("raw/prompts")
    assert df["prompt_id"].n_unique() == df.height
    assert set(df["prompt_id"]) == expected
    assert s3_lake.version("raw/prompts") == 15  # 16 merges, one commit each


def test_storage_options_from_env_fixture(s3_env, moto_s3):
    assert storage_options_from_env() == {
        "AWS_ENDPOINT_URL": moto_s3["endpoint_url"],
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "conditional_put": "etag",
    }


def test_storage_options_from_env_exact_vars():
    env = {
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "AWS_ALLOW_HTTP": "true",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_PROFILE": "ignored",
        "AWS_BUCKET": "ignored",
        "HOME": "/root",
        "NEXA_LAKE_ROOT": "s3://b/lake",
    }
    assert storage_options_from_env(env) == {
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "eu-west-1",  # AWS_DEFAULT_REGION stands in for AWS_REGION
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "conditional_put": "etag",
    }


def test_storage_options_region_precedence_and_empty_values():
    both = storage_options_from_env({"AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "us-west-2"})
    assert both == {"AWS_REGION": "us-west-2", "conditional_put": "etag"}
    empty = storage_options_from_env({"AWS_REGION": "", "AWS_ACCESS_KEY_ID": "", "AWS_DEFAULT_REGION": "ap-1"})
    assert empty == {"AWS_REGION": "ap-1", "conditional_put": "etag"}
    assert storage_options_from_env({}) == {"conditional_put": "etag"}


def test_storage_options_unsafe_rename_replaces_conditional_put():
    options = storage_options_from_env({"AWS_REGION": "us-east-1", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"})
    assert options == {"AWS_REGION": "us-east-1", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}


def test_local_lake_has_no_storage_options(lake, s3_env):
    assert lake.storage_options() is None
    assert not lake.is_remote


def test_from_env(monkeypatch, s3_env):
    monkeypatch.setenv("NEXA_LAKE_ROOT", f"s3://{s3_env}/x")
    assert LakeResource.from_env().root == f"s3://{s3_env}/x"
    monkeypatch.setenv("NEXA_LAKE_ROOT", "")
    assert LakeResource.from_env().root == "data_lake"
    monkeypatch.delenv("NEXA_LAKE_ROOT")
    assert LakeResource.from_env().root == "data_lake"
