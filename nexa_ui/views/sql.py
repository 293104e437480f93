"""SQL: read-only DuckDB over the lake views (external file access refused, time and memory capped), results and
CSV download."""

from __future__ import annotations

import duckdb
import polars as pl
import streamlit as st

from nexa_resources.lake import SqlAccessError, SqlLimitError
from nexa_ui import common, data

st.title("SQL")

views = data.existing_tables()
if not views:
    common.empty_state(["raw/prompts"], "the lake has no tables")
else:
    lake = data.lake()
    st.caption(
        "DuckDB over every lake table as a view `<layer>.<table>`, read-only: reading or writing files, "
        f"`ATTACH` and `INSTALL` are refused; a query may run {lake.sql_timeout_s:g} s and use "
        f"{lake.sql_memory_limit} of memory. Views: "
        + ", ".join(f"`{name}` (v{version})" for name, version in views)
    )
    names = {name for name, _ in views}
    default = (
        "SELECT domain, task_type, count(*) AS pairs, avg(passed::int) AS pass_rate, avg(judge_mean) AS judge_mean\n"
        "FROM distill.pairs GROUP BY ALL ORDER BY ALL"
        if "distill.pairs" in names
        else f"SELECT * FROM {views[0][0]} LIMIT 100"
    )
    query = st.text_area("Query", value=default, height=140, key="sql_query")
    if st.button("Run", key="sql_run", type="primary") or "sql_result" not in st.session_state:
        try:
            result = pl.from_arrow(data.run_sql(query))
            st.session_state["sql_result"] = (query, result, None)
        except SqlAccessError as exc:
            st.session_state["sql_result"] = (query, None, f"Refused: {exc}")
        except SqlLimitError as exc:
            st.session_state["sql_result"] = (query, None, f"Stopped: {exc}")
        except (duckdb.Error, ValueError) as exc:
            st.session_state["sql_result"] = (query, None, f"Query failed: {exc}")
    ran, result, error = st.session_state["sql_result"]
    if error:
        st.error(error, icon=":material/block:")
    elif result is not None:
        if not isinstance(result, pl.DataFrame):  # a scalar-only statement
            result = pl.DataFrame({"result": [result]})
        st.caption(f"{result.height:,} rows")
        common.show_table(result, key="sql_table")
        st.download_button("Download CSV", result.to_pandas().to_csv(index=False).encode(), file_name="nexa_query.csv",
                           mime="text/csv", key="sql_csv")
