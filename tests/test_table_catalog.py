"""The table catalog is the one description of each table: the docs and the asset graph agree with it."""

from __future__ import annotations

import pytest

from nexa_jobs.definitions import defs
from nexa_resources.tables import TABLES, asset_key, table_spec
from nexa_resources.tables.docs import DOC, render


def test_docs_table_reference_is_the_one_the_catalog_generates():
    text = DOC.read_text(encoding="utf-8")
    assert render(text) == text, "docs/lake.md is stale: run `python -m nexa_resources.tables --write`"


def test_every_table_written_by_an_asset_is_that_asset_s_output():
    graph = defs.resolve_asset_graph()
    for spec in TABLES.values():
        if spec.owner.endswith("Resource"):
            continue  # a resource's own cache, not an asset
        asset = graph.assets_def_for_key(spec.asset_key)
        assert asset.op.compute_fn.decorated_fn.__name__ == spec.owner, spec.path


def test_every_catalog_table_has_keys_in_its_schema_and_a_description():
    for spec in TABLES.values():
        assert spec.description and spec.owner, spec.path
        assert set(spec.keys) <= set(spec.stored_schema), spec.path


def test_asset_key_lists_the_tables_when_unknown():
    assert asset_key("raw.prompts") == table_spec("raw/prompts").asset_key
    with pytest.raises(ValueError, match="raw/prompts"):
        asset_key("raw/nothing")
