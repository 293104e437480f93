"""The one Definitions object loads, and every asset explains itself in the UI."""

from __future__ import annotations

import dagster as dg

from nexa_jobs.definitions import defs


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_every_asset_has_description_group_and_kinds():
    specs = list(defs.resolve_all_asset_specs())
    assert specs
    for spec in specs:
        assert spec.description, spec.key
        assert spec.group_name and spec.group_name != "default", spec.key
        assert spec.kinds, spec.key
        assert spec.key.path[0] == spec.group_name or spec.group_name in {"evaluate"}, spec.key


def test_raw_group_holds_prompts_and_rejects():
    graph = defs.resolve_asset_graph()
    raw = dg.AssetSelection.groups("raw").resolve(graph)
    assert {k.to_user_string() for k in raw} == {"raw/prompts", "raw/rejects"}
