"""The `nexa` command: materialize assets, query the lake with SQL, inspect tables, history and configuration."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

import polars as pl

from nexa_jobs.materialize import materialize
from nexa_jobs.train_plan import register as register_train_plan
from nexa_resources.lake import LakeResource, SqlAccessError, SqlLimitError
from nexa_resources.lake_sql import parse_at
from nexa_resources.profiles import PROFILE_ENV, PROFILES, resolve_all

FORMATS = ("table", "csv", "json")


def _lake() -> LakeResource:
    return LakeResource.from_env()


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
