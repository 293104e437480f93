"""Shared page parts: empty states that name the command to run, URL-backed filters, number formats."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import polars as pl
import streamlit as st

from nexa_ui import data

# Page files, relative to nexa_ui/app.py: what st.page_link / st.switch_page take.
LEADERBOARD = "views/leaderboard.py"
CELLS = "views/cells.py"
INSPECTOR = "views/inspector.py"
TRAINING = "views/training.py"
COSTS = "views/costs.py"
SQL = "views/sql.py"

ANY = "(any)"

# Which command creates each table: what an empty page tells the user to run.
_GROUP = {
    "raw": "group:raw",
    "distill": "group:raw or group:distill",
    "sft": "group:raw or group:distill or group:sft",
    "train": "group:train",
    "eval": "group:evaluate",
    "feedback": "group:evaluate or group:feedback",
}


def command_for(table: str) -> str:
    layer = table.split("/", 1)[0]
    return f".venv/bin/nexa materialize --select '{_GROUP.get(layer, '*')}'"


def empty_state(missing: Sequence[str], what: str) -> None:
    """Say which tables are missing and which command creates them (never a stack trace)."""
    names = ", ".join(f"`{t.replace('/', '.')}`" for t in missing)
    st.info(
        f"**Nothing to show yet: {what}.** The lake at `{data.lake_root()}` has no {names} table yet.\n\n"
        f"Run `make demo` (the whole loop on the embedded defaults), or materialize just these assets with "
        f"`{command_for(missing[0])}`, then reload this page.",
        icon=":material/info:",
    )


def require(*tables: str, what: str) -> dict[str, pl.DataFrame] | None:
    """The tables, or None after showing the empty state when any is missing or empty."""
    frames = {t: data.read(t) for t in tables}
    missing = [t for t, f in frames.items() if f.is_empty()]
    if missing:
        empty_state(missing, what)
        return None
    return frames


def url_select(label: str, options: Sequence[str], param: str, *, page: str, default: str | None = None,
               container=st, format_func: Callable[[str], str] = str) -> str:
    """A selectbox whose value follows the URL's query parameter `param` and writes it back.

    A link carrying `?param=value` (from another page) selects that value; choosing another value
    updates the URL, so every view is a shareable link. `page` keeps each page's widget state apart.
    """
    key = f"{page}_{param}"
    marker = f"_qp_{key}"  # the URL value this widget last agreed with
    options = list(options)
    wanted = st.query_params.get(param)
    url_changed = key not in st.session_state or st.session_state.get(marker) != wanted
    if wanted is not None and url_changed and wanted in options:
        st.session_state[key] = wanted
    if st.session_state.get(key) not in options:
        st.session_state[key] = default if default in options else options[0]
    value = container.selectbox(label, options, key=key, format_func=format_func)
    if value == ANY:
        st.query_params.pop(param, None)
    else:
        st.query_params[param] = value
    st.session_state[marker] = st.query_params.get(param)
    return value


def fmt_score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def fmt_usd(value: float | None) -> str:
    return "$0" if not value else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def fmt_int(value: float | None) -> str:
    return "–" if value is None else f"{int(value):,}"


def fmt_model(model_id: str, labels: Mapping[str, str]) -> str:
    """A model's readable label beside its id ("round 1 student · ckpt-r1-…"), or the id alone."""
    label = labels.get(model_id)
    return model_id if not label or label == model_id else f"{label} · {model_id}"


SCORE = st.column_config.NumberColumn(format="%.2f")
USD = st.column_config.NumberColumn(format="$%.4f")
PCT = st.column_config.NumberColumn(format="percent")


def show_table(frame: pl.DataFrame, key: str, **kwargs) -> None:
    """st.dataframe inside a container keyed `key` (display tables have no key of their own: tests and
    the page's CSS class `st-key-<key>` find it by this one)."""
    with st.container(key=key):
        st.dataframe(frame, hide_index=True, **kwargs)
