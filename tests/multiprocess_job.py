"""A two-step job on Nexa's multiprocess executor (nexa_jobs.execution), for tests: each step sets up the lake
resource (which records a run's worker process) in a process of its own, and the second step, started after
the first step's process has exited, does what the feedback sensor does on every tick: fail the runs whose
worker is gone. The lake folder comes from NEXA_LAKE_ROOT."""

import os

import dagster as dg

from nexa_jobs.execution import multiprocess_executor
from nexa_resources.lake import LakeResource
from nexa_resources.run_worker import fail_dead_runs


@dg.asset
def first_step(lake: LakeResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"pid": os.getpid()})


@dg.asset(deps=[first_step])
def second_step(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    failed = fail_dead_runs(context.instance, by="a step of the same run")
    if context.run_id in failed:
        raise RuntimeError("this live run was taken for dead: its recorded worker is a finished step's process")
    return dg.MaterializeResult(metadata={"pid": os.getpid()})


def two_step_job() -> dg.JobDefinition:
    executor = multiprocess_executor.configured({"max_concurrent": 2, "start_method": {"forkserver": {}}})
    defs = dg.Definitions(
        assets=[first_step, second_step],
        resources={"lake": LakeResource.from_env()},
        jobs=[dg.define_asset_job("two_steps", executor_def=executor)],
    )
    return defs.resolve_job_def("two_steps")
