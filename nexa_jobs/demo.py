"""`make demo`: materialize the pipeline on the embedded defaults and print what it built."""

from __future__ import annotations

import time

import polars as pl

from nexa_jobs.cli import materialize
from nexa_resources.lake import LakeResource


def summary(lake: LakeResource) -> str:
    """A printable summary of the lake: tables, prompt cells and rejects."""
    lines = [f"Lake at {lake.root_uri()}", ""]
    rows = []
    for spec in lake.tables():
        dt = lake.delta_table(spec.path)
        rows.append({"table": spec.sql_name, "delta_version": dt.version(), "rows": dt.count()})
    with pl.Config(tbl_rows=100, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        lines.append(str(pl.DataFrame(rows)))
        if lake.exists("raw/prompts"):
            con = lake.connect()
            cells = con.sql(
                "SELECT domain, task_type, count(*) FILTER (split = 'train') AS train, "
                "count(*) FILTER (split = 'eval') AS eval FROM raw.prompts GROUP BY ALL ORDER BY ALL"
            ).pl()
            lines += ["", "raw.prompts by cell:", str(cells)]
            if lake.exists("raw/rejects"):
                rejects = con.sql("SELECT reason_code, count(*) AS n FROM raw.rejects GROUP BY ALL ORDER BY n DESC").pl()
                if rejects.height:
                    lines += ["", "raw.rejects by reason:", str(rejects)]
    lines += [
        "",
        "Next:",
        '  nexa sql "SELECT domain, task_type, split, count(*) FROM raw.prompts GROUP BY ALL"',
        "  dagster dev -w workspace.yaml     # the asset graph in the Dagster UI",
    ]
    return "\n".join(lines)


def main() -> int:
    started = time.monotonic()
    result = materialize("*")
    if not result.success:
        print(f"demo run {result.run_id} failed; see the log above")
        return 1
    print(f"\nDemo run {result.run_id} finished in {time.monotonic() - started:.1f}s\n")
    print(summary(LakeResource.from_env()))
    return 0
