"""What NEXA_DAGSTER_PG_URL and NEXA_EXECUTOR choose, without a server or a run (quick)."""

from __future__ import annotations

from types import SimpleNamespace

import dagster as dg
import pytest

from nexa_jobs.execution import (
    EXECUTOR_ENV,
    MAX_CONCURRENT_ENV,
    RunWorkerMultiprocessExecutor,
    executor_def,
    executor_name,
    max_concurrent,
)
from nexa_jobs.instance import DAGSTER_YAML, PG_URL_ENV, POSTGRES_YAML, check_pg_url, dagster_home, storage_label
from nexa_resources.run_worker import PID_TAG, tag_run_worker, worker_tags

SECRET_URL = "postgresql+psycopg2://nexa:s3cret@db.example:5432/dagster"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(PG_URL_ENV, raising=False)
    return tmp_path / "home"


def test_sqlite_stays_the_default(home):
    assert dagster_home() == home
    assert (home / "dagster.yaml").read_text() == DAGSTER_YAML
    assert "storage:" not in DAGSTER_YAML and storage_label() == "SQLite (DAGSTER_HOME)"


def test_the_url_chooses_postgres_and_is_never_written(home, monkeypatch):
    monkeypatch.setenv(PG_URL_ENV, SECRET_URL)
    dagster_home()
    text = (home / "dagster.yaml").read_text()
    assert text == POSTGRES_YAML and "s3cret" not in text
    assert f"postgres_url:\n      env: {PG_URL_ENV}" in text
    assert storage_label() == f"PostgreSQL ({PG_URL_ENV})"


def test_a_url_without_an_installed_driver_is_refused_without_printing_it(home, monkeypatch):
    import importlib.util

    check_pg_url(SECRET_URL)  # psycopg2 comes with dagster-postgres
    bare = SECRET_URL.replace("+psycopg2", "")  # SQLAlchemy 2.1 reads it as psycopg 3
    for url in (["postgres://nexa:s3cret@db/dagster", "mysql://nexa:s3cret@db/dagster", "s3cret"]
                + ([bare] if importlib.util.find_spec("psycopg") is None else [])):
        monkeypatch.setenv(PG_URL_ENV, url)
        with pytest.raises(ValueError, match=r"postgresql\+psycopg2://user:password@host") as err:
            dagster_home()
        assert "s3cret" not in str(err.value)
    assert not home.exists()


def test_nexas_sqlite_yaml_moves_to_postgres_but_never_back_silently(home, monkeypatch):
    dagster_home()
    monkeypatch.setenv(PG_URL_ENV, SECRET_URL)
    dagster_home()
    assert (home / "dagster.yaml").read_text() == POSTGRES_YAML
    monkeypatch.delenv(PG_URL_ENV)
    with pytest.raises(ValueError, match=f"keeps its runs in PostgreSQL, but {PG_URL_ENV} is not set"):
        dagster_home()
    assert (home / "dagster.yaml").read_text() == POSTGRES_YAML


def test_someone_elses_yaml_is_left_alone(home, monkeypatch, capsys):
    home.mkdir()
    mine = "telemetry:\n  enabled: false\n"
    (home / "dagster.yaml").write_text(mine)
    monkeypatch.setenv(PG_URL_ENV, SECRET_URL)
    dagster_home()
    assert (home / "dagster.yaml").read_text() == mine
    err = capsys.readouterr().err
    assert f"warning: {PG_URL_ENV} is set" in err and "s3cret" not in err


def test_the_postgres_yaml_loads_as_dagster_postgres_storage(home, monkeypatch):
    """The instance config validates and names dagster-postgres' storage, reading the URL from the variable
    (nothing connects: the storage is built lazily only when opened)."""
    from dagster._core.instance.config import dagster_instance_config

    monkeypatch.setenv(PG_URL_ENV, SECRET_URL)
    dagster_home()
    config, _ = dagster_instance_config(str(home))
    assert config["storage"] == {"postgres": {"postgres_url": {"env": PG_URL_ENV}}}


def test_executor_from_the_environment(monkeypatch):
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    monkeypatch.delenv(MAX_CONCURRENT_ENV, raising=False)
    assert executor_name() == "in_process" and executor_def() is dg.in_process_executor
    monkeypatch.setenv(EXECUTOR_ENV, "multiprocess")
    monkeypatch.setenv(MAX_CONCURRENT_ENV, "3")
    assert executor_name() == "multiprocess" and max_concurrent() == 3
    executor = executor_def()
    assert executor.name == "multiprocess"
    resolved = executor.config_schema.resolve_config({})
    assert resolved.success, resolved.errors
    config = resolved.value["config"]
    assert config["max_concurrent"] == 3 and config["start_method"] == {"forkserver": {}}
    built = executor.executor_creation_fn(SimpleNamespace(executor_config=config))
    assert isinstance(built, RunWorkerMultiprocessExecutor)  # records the orchestrator as the run's worker
    assert built._max_concurrent == 3 and built._start_method == "forkserver"
    monkeypatch.setenv(EXECUTOR_ENV, "celery")
    with pytest.raises(ValueError, match="in_process, multiprocess"):
        executor_name()
    monkeypatch.setenv(EXECUTOR_ENV, "multiprocess")
    monkeypatch.setenv(MAX_CONCURRENT_ENV, "0")
    with pytest.raises(ValueError, match=">= 1"):
        max_concurrent()


def test_a_step_process_does_not_retag_a_run_its_orchestrator_tagged(tmp_path):
    """The multiprocess executor hands each step the run as it was at launch: the stored tags count."""
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        job = dg.GraphDefinition(name="g").to_job()
        run = instance.create_run_for_job(job)
        instance.add_run_tags(run.run_id, worker_tags(pid=1))  # the orchestrator, after `run` was copied
        tag_run_worker(instance, run)  # a step process with the stale copy
        assert instance.get_run_by_id(run.run_id).tags[PID_TAG] == "1"
        fresh = instance.create_run_for_job(job)
        tag_run_worker(instance, fresh)
        assert instance.get_run_by_id(fresh.run_id).tags == worker_tags()
