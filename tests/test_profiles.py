"""Profiles (NEXA_PROFILE), env overrides, `nexa config` with secrets masked, and the generated settings docs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nexa_jobs import arrival
from nexa_jobs.cli import main
from nexa_resources import profiles
from nexa_resources.compute import ComputeResource
from nexa_resources.inputs import DEFAULT_INPUT, InputsResource
from nexa_resources.lake import DEFAULT_ROOT, LakeResource, configured_root
from nexa_resources.lake_sql import DEFAULT_SQL_MEMORY_LIMIT, DEFAULT_SQL_TIMEOUT_S
from nexa_resources.teacher import TeacherResource

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


@pytest.fixture
def clean_env(monkeypatch):
    """No Nexa setting in the environment: every value comes from the profile or the default."""
    for setting in profiles.SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)
    return monkeypatch


def config_rows(capsys, *args: str) -> dict[str, dict[str, str]]:
    assert main(["config", "--format", "json", *args]) == 0
    return {row["setting"]: row for row in json.loads(capsys.readouterr().out)}


def test_local_is_the_default_profile_and_changes_nothing(clean_env, capsys):
    assert profiles.profile_name() == "local"
    assert LakeResource.from_env().root == DEFAULT_ROOT
    assert InputsResource.from_env().uri == DEFAULT_INPUT
    assert ComputeResource.from_env().backend == "local"
    rows = config_rows(capsys)
    assert rows["NEXA_PROFILE"] == {"setting": "NEXA_PROFILE", "value": "local", "source": "default"}
    assert rows["NEXA_LAKE_ROOT"]["value"] == DEFAULT_ROOT


def test_s3_and_cloud_profiles_select_their_resource_sets(clean_env, capsys):
    clean_env.setenv("NEXA_PROFILE", "s3")
    clean_env.setenv("NEXA_S3_ROOT", "s3://team-bucket/nexa/")
    assert LakeResource.from_env().root == configured_root() == "s3://team-bucket/nexa/lake"
    assert InputsResource.from_env().uri == "s3://team-bucket/nexa/incoming"
    assert ComputeResource.from_env().backend == "local"
    clean_env.setenv("NEXA_PROFILE", "Cloud")
    compute = ComputeResource.from_env()
    assert (compute.backend, compute.bucket) == ("skypilot", "s3://team-bucket/nexa")
    rows = config_rows(capsys)
    assert rows["NEXA_COMPUTE_BACKEND"] == {
        "setting": "NEXA_COMPUTE_BACKEND",
        "value": "skypilot",
        "source": "profile cloud",
    }
    assert rows["NEXA_S3_ROOT"]["source"] == "env"
    assert config_rows(capsys, "--profile", "local")["NEXA_LAKE_ROOT"]["value"] == DEFAULT_ROOT


def test_an_env_var_overrides_its_profile(clean_env, capsys, tmp_path):
    clean_env.setenv("NEXA_PROFILE", "cloud")
    clean_env.setenv("NEXA_LAKE_ROOT", str(tmp_path / "lake"))
    clean_env.setenv("NEXA_COMPUTE_BACKEND", "local")
    clean_env.setenv("NEXA_INPUT_URI", "")  # empty is unset, as before profiles
    assert LakeResource.from_env().root == str(tmp_path / "lake")
    assert ComputeResource.from_env().backend == "local"
    assert InputsResource.from_env().uri == "s3://nexa/incoming"
    rows = config_rows(capsys)
    assert rows["NEXA_LAKE_ROOT"] == {"setting": "NEXA_LAKE_ROOT", "value": str(tmp_path / "lake"), "source": "env"}
    assert rows["NEXA_INPUT_URI"]["source"] == "profile cloud"


def test_the_s3_profile_writes_a_real_s3_lake(clean_env, s3_env):
    clean_env.setenv("NEXA_PROFILE", "s3")
    clean_env.setenv("NEXA_S3_ROOT", f"s3://{s3_env}/team")
    lake = LakeResource.from_env()
    lake.write("raw/notes", pl.DataFrame({"id": ["a"], "text": ["hello"]}), mode="overwrite")
    assert lake.uri("raw/notes") == f"s3://{s3_env}/team/lake/raw/notes"
    assert lake.read("raw/notes")["text"].to_list() == ["hello"]


def test_secrets_are_masked_and_reach_resources_only_as_env_vars(clean_env, capsys):
    clean_env.setenv("OPENAI_API_KEY", "sk-never-printed")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "aws-never-printed")
    clean_env.setenv("NEXA_DAGSTER_PG_URL", "postgresql+psycopg2://nexa:pw-never-printed@db/nexa")
    assert main(["config"]) == 0
    table = capsys.readouterr().out
    assert main(["config", "--format", "csv"]) == 0
    text = table + capsys.readouterr().out
    assert "never-printed" not in text and text.count(profiles.MASK) >= 6
    assert config_rows(capsys)["OPENAI_API_KEY"] == {"setting": "OPENAI_API_KEY", "value": "****", "source": "env"}
    assert TeacherResource.from_env().api_key == dg.EnvVar("OPENAI_API_KEY")
    assert all(not s.profiles for s in profiles.SETTINGS if s.secret)
    with pytest.raises(ValueError, match="NEXA_LAKE_ROOT is not a secret setting; secrets are .*OPENAI_API_KEY"):
        profiles.secret_env("NEXA_LAKE_ROOT")


def test_an_unknown_profile_is_an_error_listing_the_valid_ones(clean_env, capsys):
    clean_env.setenv("NEXA_PROFILE", "prod")
    with pytest.raises(ValueError, match="unknown NEXA_PROFILE 'prod': valid profiles are local, s3, cloud"):
        LakeResource.from_env()
    assert main(["config"]) == 2
    assert "valid profiles are local, s3, cloud" in capsys.readouterr().err


def test_documented_defaults_are_the_code_defaults():
    fields = ComputeResource.model_fields
    expected = {
        "NEXA_LAKE_ROOT": DEFAULT_ROOT,
        "NEXA_INPUT_URI": DEFAULT_INPUT,
        "NEXA_SQL_TIMEOUT_S": f"{DEFAULT_SQL_TIMEOUT_S:g}",
        "NEXA_SQL_MEMORY_LIMIT": DEFAULT_SQL_MEMORY_LIMIT,
        "NEXA_ARRIVAL_BATCH_FILES": str(arrival.DEFAULT_BATCH_FILES),
        "NEXA_ARRIVAL_MAX_RUNS_PER_TICK": str(arrival.DEFAULT_MAX_RUNS_PER_TICK),
        "NEXA_ARRIVAL_INTERVAL_S": str(arrival.DEFAULT_INTERVAL_S),
        "NEXA_COMPUTE_BACKEND": fields["backend"].default,
        "NEXA_COMPUTE_ACCELERATORS": ",".join(fields["accelerators"].default_factory()),
        "NEXA_COMPUTE_MAX_PRICE_PER_HOUR": str(fields["max_price_per_hour"].default),
        "NEXA_COMPUTE_MAX_TOTAL_USD": str(fields["max_total_usd"].default),
        "NEXA_COMPUTE_HOURS": str(fields["estimated_hours"].default),
        "NEXA_COMPUTE_SPOT": str(fields["use_spot"].default).lower(),
    }
    assert {env: profiles.BY_ENV[env].default for env in expected} == expected


def test_the_settings_reference_in_the_docs_is_generated_from_the_table():
    doc = DOCS.read_text(encoding="utf-8")
    assert profiles.with_reference(doc) == doc, "run: python -m nexa_resources.profiles --write docs/configuration.md"
    for setting in profiles.SETTINGS:
        assert f"| `{setting.env}` |" in doc
    with pytest.raises(ValueError, match="no generated section"):
        profiles.with_reference("# nothing generated here\n")


def test_every_nexa_variable_the_code_names_is_in_the_table():
    root = Path(__file__).resolve().parents[1]
    sources = [
        *root.glob("nexa_*/**/*.py"),
        *root.glob("sky/*.yaml"),
        *root.glob("deploy/**/*.yaml"),
        root / "Makefile",
    ]
    named = set()
    for path in sources:
        named |= set(re.findall(r"\bNEXA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")))
    not_settings = {"NEXA_METRICS", "NEXA_TEACHER"}  # the trainer's stdout marker; the teacher's env prefix
    missing = named - set(profiles.BY_ENV) - set(profiles.TASK_ENV) - not_settings
    assert not missing, f"add these to nexa_resources/profiles.py SETTINGS (or TASK_ENV): {sorted(missing)}"
