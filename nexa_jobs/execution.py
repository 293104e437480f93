"""How a run executes its steps: Dagster's in-process executor (the default) or the multiprocess executor.

`NEXA_EXECUTOR=multiprocess` runs each step in a process of its own, so independent steps (eval/prompts
beside the teacher's collection, asset checks beside the next asset) run in parallel, at most
`NEXA_EXECUTOR_MAX_CONCURRENT` at a time (default: the CPU count). On a small machine the in-process
executor is faster (starting a process per step costs more than the parallelism gains: the raw group
took 27 s against 6 s on 2 cores), and one process shares one local teacher server; with the multiprocess
executor every step that asks the local teacher starts its own. The lake takes concurrent writers: each
write is a Delta commit that retries on a lost race (nexa_resources/lake.py).

The choice is read from the environment when `nexa_jobs.definitions` loads, so the code location (UI,
daemon, the runs they launch), `nexa materialize`, `make demo` and the step processes all agree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster._core.definitions.executor_definition import (
    MULTI_PROC_CONFIG,
    multiple_process_executor_requirements,
)
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.multiprocess import MultiprocessExecutor

from nexa_resources.run_worker import tag_run_worker

EXECUTOR_ENV = "NEXA_EXECUTOR"
MAX_CONCURRENT_ENV = "NEXA_EXECUTOR_MAX_CONCURRENT"
EXECUTORS = ("in_process", "multiprocess")
DEFINITIONS_MODULE = "nexa_jobs.definitions"
# The step processes fork from a server that imported the definitions once (Dagster's forkserver start
# method preloads the job's module): a step starts in well under a second instead of re-importing
# dagster, torch and the assets each time as `spawn` does.
START_METHOD: dict[str, dict[str, Any]] = {"forkserver": {}}


def executor_name() -> str:
    """NEXA_EXECUTOR, checked: `in_process` (default) or `multiprocess`."""
    name = (os.environ.get(EXECUTOR_ENV) or "in_process").strip().lower().replace("-", "_")
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={os.environ[EXECUTOR_ENV]!r} is not an executor; valid: {', '.join(EXECUTORS)}")
    return name


def max_concurrent() -> int:
    """NEXA_EXECUTOR_MAX_CONCURRENT (>= 1), else the CPU count: how many step processes run at once."""
    text = os.environ.get(MAX_CONCURRENT_ENV)
    if not text:
        return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_CONCURRENT_ENV}={text!r} must be a whole number of processes >= 1")
    return value


class RunWorkerMultiprocessExecutor(MultiprocessExecutor):
    """Dagster's multiprocess executor that records the orchestrating process as the run's worker before
    any step starts. Otherwise the first step's process would tag itself (the lake resource tags the
    process it is set up in), and once that step ended, `fail_dead_runs` would take a live run for dead."""

    def execute(self, plan_context, execution_plan):  # noqa: ANN001, ANN201 - Dagster's signature
        tag_run_worker(plan_context.instance, plan_context.dagster_run)
        yield from super().execute(plan_context, execution_plan)


@dg.executor(
    name="multiprocess",
    config_schema=MULTI_PROC_CONFIG,
    requirements=multiple_process_executor_requirements(),
)
def multiprocess_executor(init_context: dg.InitExecutorContext) -> RunWorkerMultiprocessExecutor:
    """Dagster's multiprocess executor (same config), with the run worker recorded up front."""
    config: Mapping[str, Any] = init_context.executor_config
    start_method, start_config = next(iter((config.get("start_method") or {"spawn": {}}).items()))
    return RunWorkerMultiprocessExecutor(
        retries=RetryMode.from_config(config["retries"]),  # type: ignore[arg-type]
        max_concurrent=config.get("max_concurrent"),
        tag_concurrency_limits=config.get("tag_concurrency_limits"),
        start_method=start_method,
        explicit_forkserver_preload=(start_config or {}).get("preload_modules"),
        step_dependency_config=StepDependencyConfig.from_config(config.get("step_dependency_config")),
    )


def executor_def() -> dg.ExecutorDefinition:
    """The executor NEXA_EXECUTOR names, configured from the environment."""
    if executor_name() == "multiprocess":
        return multiprocess_executor.configured(
            {"max_concurrent": max_concurrent(), "start_method": START_METHOD}, name="multiprocess"
        )
    return dg.in_process_executor


def execute(
    job_name: str,
    *,
    instance: dg.DagsterInstance,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    asset_selection: Sequence[dg.AssetKey] | None = None,
) -> dg.ExecuteInProcessResult | Any:
    """Run one job of the definitions on `instance` with the executor NEXA_EXECUTOR names; never raises on
    a failed step (check `.success`).

    In-process: `execute_in_process` in this process. Multiprocess: `dagster.execute_job` on the job
    reconstructed from `nexa_jobs.definitions`, orchestrated from this process, every step in its own
    process (so `instance` must be persistent: DAGSTER_HOME, SQLite or PostgreSQL).
    """
    from nexa_jobs.definitions import defs

    if executor_name() == "in_process":
        return defs.resolve_job_def(job_name).execute_in_process(
            run_config=dict(run_config or {}),
            instance=instance,
            tags=dict(tags or {}),
            asset_selection=list(asset_selection) if asset_selection else None,
            raise_on_error=False,
        )
    if instance.is_ephemeral:
        raise ValueError(
            f"{EXECUTOR_ENV}=multiprocess needs a persistent Dagster instance: set DAGSTER_HOME "
            "(or run from the project, whose .dagster_home is used)"
        )
    job = ReconstructableRepository.for_module(
        DEFINITIONS_MODULE, "defs", working_directory=os.getcwd()
    ).get_reconstructable_job(job_name)
    return dg.execute_job(
        job,
        instance=instance,
        run_config=dict(run_config or {}),
        tags=dict(tags or {}),
        asset_selection=list(asset_selection) if asset_selection else None,
        raise_on_error=False,
    )
