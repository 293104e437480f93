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


def test_loop_groups_sensors_and_refresh_job():
    graph = defs.resolve_asset_graph()
    groups = {g: {k.to_user_string() for k in dg.AssetSelection.groups(g).resolve(graph)} for g in ("evaluate", "feedback")}
    assert groups["evaluate"] == {"eval/prompts", "eval/predictions", "eval/scores", "eval/metrics"}
    assert groups["feedback"] == {"feedback/weaknesses", "feedback/requests", "feedback/rounds"}
    refresh = defs.resolve_job_def("refresh_job")
    assert {k.to_user_string() for k in refresh.asset_layer.executable_asset_keys} == {
        k.to_user_string() for k in graph.get_all_asset_keys()
    }
    sensors = {s.name: s for s in defs.sensors}
    assert sensors["feedback_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["feedback_sensor"].job_name == "refresh_job"
