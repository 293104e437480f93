"""The `nexa` command: materialize assets, query the lake with SQL, inspect tables, history and configuration."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence

import polars as pl

from nexa_jobs.train_plan import register as register_train_plan
from nexa_resources.lake import LakeResource, SqlAccessError, SqlLimitError
from nexa_resources.lake_sql import parse_at
from nexa_resources.profiles import PROFILE_ENV, PROFILES, resolve_all
from nexa_resources.run_worker import fail_dead_runs, worker_tags

FORMATS = ("table", "csv", "json")


def _lake() -> LakeResource:
    return LakeResource.from_env()


def _instance():
    import dagster as dg

    from nexa_jobs.instance import PROJECT_HOME, dagster_home, wants_persistent_instance

    # The project's instance when `make up` or `make demo` made one here (or runs need one on disk:
    # NEXA_DAGSTER_PG_URL, NEXA_EXECUTOR=multiprocess), so CLI runs show in the UI and the sensors see
    # them; else DAGSTER_HOME; else a throwaway instance.
    if not os.environ.get("DAGSTER_HOME") and (os.path.isdir(PROJECT_HOME) or wants_persistent_instance()):
        os.environ["DAGSTER_HOME"] = os.path.abspath(PROJECT_HOME)
    if not os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.ephemeral()
    dagster_home()  # writes Nexa's dagster.yaml into a new DAGSTER_HOME
    instance = dg.DagsterInstance.get()
    for run_id in fail_dead_runs(instance, by="nexa materialize"):
        print(f"run {run_id} was left STARTED by a worker that is gone (killed): marked failed", file=sys.stderr)
    return instance


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
        instance=_instance(),
        asset_selection=sorted(keys),
        tags={**worker_tags(), **(tags or {})},
    )


def cmd_materialize(args: argparse.Namespace) -> int:
    run_config = None
    if args.config:
        with open(args.config, encoding="utf-8") as fh:
            text = fh.read()
        if args.config.endswith((".yaml", ".yml")):
            import yaml

            run_config = yaml.safe_load(text)
        else:
            run_config = json.loads(text)
    started = time.monotonic()
    result = materialize(args.select, run_config)
    print(f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'} in {time.monotonic() - started:.1f}s")
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        meta = mat.metadata
        version = meta.get("delta_version")
        rows = meta.get("dagster/row_count")
        print(
            f"  {mat.asset_key.to_user_string():<24} "
            f"delta v{getattr(version, 'value', version)}  rows {getattr(rows, 'value', rows)}"
        )
    for check in result.get_asset_check_evaluations():
        print(f"  check {check.asset_key.to_user_string()}:{check.check_name:<20} {'pass' if check.passed else 'FAIL'}")
    return 0 if result.success else 1


def _print_frame(df: pl.DataFrame, fmt: str) -> None:
    if fmt == "csv":
        sys.stdout.write(df.write_csv())
    elif fmt == "json":
        sys.stdout.write(json.dumps(df.to_dicts(), default=str, ensure_ascii=False, indent=1) + "\n")
    else:
        with pl.Config(tbl_rows=200, tbl_cols=-1, fmt_str_lengths=80, tbl_width_chars=200):
            print(df)


def cmd_sql(args: argparse.Namespace) -> int:
    lake = _lake()
    try:
        table = lake.sql(args.query, at=parse_at(args.at or []), timeout_s=args.timeout)
    except (SqlAccessError, SqlLimitError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # duckdb's parser/binder errors are the user's to read, not a traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    _print_frame(pl.from_arrow(table), args.format)
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0 (0: no limit)")
    return value


def cmd_tables(args: argparse.Namespace) -> int:
    lake = _lake()
    rows = []
    for spec in lake.tables():
        dt = lake.delta_table(spec.path)
        rows.append({"table": spec.sql_name, "version": dt.version(), "rows": dt.count(), "uri": lake.uri(spec)})
    if not rows:
        print(f"the lake at {lake.root_uri()} has no tables yet: run `nexa materialize` (or `make demo`)")
        return 0
    _print_frame(pl.DataFrame(rows), args.format)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    lake = _lake()
    rows = [
        {
            "version": h.get("version"),
            "timestamp": h.get("timestamp"),
            "operation": h.get("operation"),
            "run_id": h.get("nexa.run_id"),
            "metrics": json.dumps(h.get("operationMetrics", {}), default=str),
        }
        for h in lake.history(args.table)
    ]
    _print_frame(pl.DataFrame(rows), args.format)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    resolved = resolve_all(profile=args.profile)
    rows = [{"setting": r.setting.env, "value": r.shown(), "source": r.source} for r in resolved]
    if args.format != "table":
        _print_frame(pl.DataFrame(rows), args.format)
        return 0
    name = next(r.value for r in resolved if r.setting.env == PROFILE_ENV)
    print(f"profile {name}: {PROFILES[name]}\n")
    widths = {key: max(len(row[key]) for row in rows) for key in ("setting", "value")}
    for row in rows:
        print(f"{row['setting']:<{widths['setting']}}  {row['value']:<{widths['value']}}  {row['source']}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from nexa_jobs.demo import main as demo_main

    return demo_main()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("materialize", help="materialize assets in this process")
    p.add_argument("--select", default="*", help="Dagster asset selection, e.g. 'group:raw' or 'key:raw/prompts'")
    p.add_argument("--config", help="run config file (YAML or JSON)")
    p.set_defaults(func=cmd_materialize)

    p = sub.add_parser("sql", help="run read-only DuckDB SQL over the lake views (<layer>.<table>)")
    p.add_argument("query")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--at", action="append", metavar="LAYER.TABLE=VERSION",
                   help="read a table at a past Delta version or ISO timestamp (repeatable)")
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="stop the query after this many seconds (0: no limit; default NEXA_SQL_TIMEOUT_S or 30); "
                   "memory: NEXA_SQL_MEMORY_LIMIT (default 1GB)")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("tables", help="list lake tables with their version and row count")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("history", help="a table's Delta commits")
    p.add_argument("table", help="layer.table, e.g. raw.prompts")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("config", help="every setting's value and where it came from (env, profile, default)")
    p.add_argument("--profile", choices=list(PROFILES), help="resolve for this profile instead of NEXA_PROFILE's")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("demo", help="run the pipeline on the embedded defaults and print a summary")
    p.set_defaults(func=_demo)

    register_train_plan(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_UPDATE_CHECK", "1")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
