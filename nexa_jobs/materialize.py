"""Materialize a selection of assets from this process: what `nexa materialize` and `make demo` run."""

from __future__ import annotations

import warnings

from nexa_jobs.instance import open_instance
from nexa_resources.run_worker import worker_tags


def materialize(
    selection: str,
    run_config: dict | None = None,
    tags: dict[str, str] | None = None,
    log_level: str = "INFO",
):
    """Materialize a selection of assets, orchestrated from this process with the executor NEXA_EXECUTOR
    names (in-process by default; see nexa_jobs/execution.py)."""
    import dagster as dg

    from nexa_jobs.definitions import defs
    from nexa_jobs.execution import execute

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    graph = defs.resolve_asset_graph()
    keys = dg.AssetSelection.from_string(selection).required_multi_asset_neighbors().resolve(graph)
    if not keys:
        valid = ", ".join(sorted(k.to_user_string() for k in graph.get_all_asset_keys()))
        raise ValueError(f"selection {selection!r} matches no asset; assets are: {valid}")
    job = defs.resolve_implicit_global_asset_job_def()
    config = {"loggers": {"console": {"config": {"log_level": log_level}}}, **(run_config or {})}
    return execute(
        job.name,
        run_config=config,
        instance=open_instance(),
        asset_selection=sorted(keys),
        tags={**worker_tags(), **(tags or {})},
    )
