"""The `nexa` command through a real subprocess: materialize, sql (formats, time travel, refusals)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
NEXA = str(Path(sys.executable).parent / "nexa")


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([NEXA, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A working directory with a lake materialized by `nexa materialize`, then a new input file."""
    cwd = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXA_", "DAGSTER_HOME"))}
    env["NEXA_INPUT_URI"] = str(cwd / "incoming")
    (cwd / "incoming").mkdir()
    first = run(["materialize", "--select", "group:raw"], env, cwd)
    assert first.returncode == 0, first.stderr
    assert "raw/prompts" in first.stdout and "succeeded" in first.stdout
    shutil.copy(FIXTURES / "inputs" / "new_prompts.jsonl", cwd / "incoming")
    second = run(["materialize", "--select", "group:raw"], env, cwd)
    assert second.returncode == 0, second.stderr
    return cwd, env


def test_default_lake_is_data_lake_in_the_working_directory(project):
    cwd, _ = project
    assert (cwd / "data_lake" / "raw" / "prompts" / "_delta_log").is_dir()


def test_sql_json_groups_cover_every_cell_and_both_splits(project):
    cwd, env = project
    out = run(
        ["sql", "SELECT domain, task_type, split, count(*) AS n FROM raw.prompts GROUP BY ALL", "--format", "json"],
        env,
        cwd,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len({(r["domain"], r["task_type"]) for r in rows}) >= 8
    assert {r["split"] for r in rows} == {"train", "eval"}


def test_sql_table_and_csv_formats(project):
    cwd, env = project
    table = run(["sql", "SELECT count(*) AS n FROM raw.rejects"], env, cwd)
    assert table.returncode == 0 and "│ 5 " in table.stdout
    out = run(["sql", "SELECT reason_code, locator FROM raw.rejects ORDER BY locator", "--format", "csv"], env, cwd)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 5 and all(r["locator"].startswith("new_prompts.jsonl:") for r in rows)


def test_sql_reads_past_versions(project):
    cwd, env = project
    now = json.loads(run(["sql", "SELECT count(*) AS n FROM raw.prompts", "--format", "json"], env, cwd).stdout)
    then = run(["sql", "SELECT count(*) AS n FROM raw.prompts", "--format", "json", "--at", "raw.prompts=0"], env, cwd)
    assert then.returncode == 0, then.stderr
    assert json.loads(then.stdout)[0]["n"] == now[0]["n"] - 5


def test_sql_refuses_file_access_with_a_clear_message(project):
    cwd, env = project
    out = run(["sql", "SELECT * FROM read_csv('/etc/passwd')"], env, cwd)
    assert out.returncode == 2
    assert "external file access is disabled" in out.stderr and "raw.prompts" in out.stderr
    assert "root:" not in out.stdout
    assert "Traceback" not in out.stderr


def test_sql_errors_are_messages_not_tracebacks(project):
    cwd, env = project
    bad_at = run(["sql", "SELECT 1", "--at", "raw.prompts"], env, cwd)
    assert bad_at.returncode == 2 and "layer.table=VERSION" in bad_at.stderr
    unknown = run(["sql", "SELECT * FROM raw.nothing"], env, cwd)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr


def test_sql_box_refuses_file_paths_and_stops_runaway_queries(project):
    cwd, env = project
    (cwd / ".tmp").mkdir(exist_ok=True)  # DuckDB's default temp folder was readable and writable (issue 13)
    for query in ("FROM '/etc/passwd'", "COPY (SELECT 'x' a) TO '.tmp/w.csv'", "ATTACH '.tmp/evil.db' AS e"):
        out = run(["sql", query], env, cwd)
        assert out.returncode == 2 and "external file access is disabled" in out.stderr, (query, out.stderr)
        assert "raw.prompts" in out.stderr and "Traceback" not in out.stderr
    assert not any((cwd / ".tmp").iterdir())
    runaway = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b"
    out = run(["sql", runaway, "--timeout", "1"], env, cwd)
    assert out.returncode == 2 and "query stopped after 1 s" in out.stderr and "Traceback" not in out.stderr
    slow = run(["sql", runaway], {**env, "NEXA_SQL_TIMEOUT_S": "1"}, cwd)
    assert slow.returncode == 2 and "query stopped after 1 s" in slow.stderr
    bad = run(["sql", "SELECT 1", "--timeout", "-3"], env, cwd)
    assert bad.returncode == 2 and "not a number of seconds >= 0" in bad.stderr


def test_tables_and_history(project):
    cwd, env = project
    tables = run(["tables", "--format", "json"], env, cwd)
    names = {r["table"]: r for r in json.loads(tables.stdout)}
    assert names["raw.prompts"]["version"] == 1
    history = json.loads(run(["history", "raw.prompts", "--format", "json"], env, cwd).stdout)
    assert [h["version"] for h in history] == [1, 0]
    assert all(h["run_id"] for h in history)


def test_lake_root_from_env(project, tmp_path):
    _, env = project
    env = {**env, "NEXA_LAKE_ROOT": str(tmp_path / "elsewhere"), "NEXA_INPUT_URI": str(tmp_path / "none")}
    out = run(["materialize", "--select", "key:raw/prompts"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "elsewhere" / "raw" / "prompts").is_dir()
    bad = run(["materialize", "--select", "group:nothing"], env, tmp_path)
    assert bad.returncode == 2 and "raw/prompts" in bad.stderr


def test_same_commands_against_s3_configured_only_by_env(s3_env, tmp_path):
    import boto3

    boto3.client("s3").upload_file(str(FIXTURES / "inputs" / "new_prompts.jsonl"), s3_env, "in/new.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXA_")}
    env.update(NEXA_LAKE_ROOT=f"s3://{s3_env}/lake", NEXA_INPUT_URI=f"s3://{s3_env}/in")
    assert run(["materialize", "--select", "group:raw"], env, tmp_path).returncode == 0
    out = run(["sql", "SELECT origin, count(*) AS n FROM raw.prompts GROUP BY ALL", "--format", "json"], env, tmp_path)
    assert {r["origin"]: r["n"] for r in json.loads(out.stdout)}["file"] == 5
    assert not (tmp_path / "data_lake").exists()


def test_teacher_endpoint_from_env_vars_only(srv, tmp_path):
    """Another OpenAI-compatible server, configured by the README's env vars, with no code change."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXA_")}
    env.update(
        NEXA_INPUT_URI=str(tmp_path / "none"),
        NEXA_TEACHER_BASE_URL=srv.base_url,
        NEXA_TEACHER_MODEL="other-teacher",
        NEXA_TEACHER_API_KEY="sk-cli-env-key",
    )
    config = tmp_path / "run.yaml"
    config.write_text("ops:\n  distill__completions:\n    config:\n      per_cell: 1\n")
    out = run(["materialize", "--select", "group:raw or group:distill or group:sft", "--config", str(config)], env, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    stats = srv.stats()
    assert stats["requests"] >= 8 and "Bearer sk-cli-env-key" in stats["auth_headers"]
    rows = json.loads(
        run(["sql", "SELECT teacher_model, count(*) AS n, min(completion_tokens) AS t FROM distill.completions "
             "WHERE regenerated_from IS NULL GROUP BY ALL", "--format", "json"], env, tmp_path).stdout
    )
    assert rows == [{"teacher_model": "other-teacher", "n": 8, "t": rows[0]["t"]}] and rows[0]["t"] > 0
    assert "sk-cli-env-key" not in out.stdout + out.stderr
    again = run(["materialize", "--select", "key:distill/completions", "--config", str(config)], env, tmp_path)
    assert "8 already answered (cache), 0 to send" in again.stderr
