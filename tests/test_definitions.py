"""The definitions load, and the lineage graph is the one the design lays out."""

from __future__ import annotations

import dagster as dg


def test_definitions_validate_loadable(defs: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(defs)


def test_every_asset_has_group_kinds_and_description(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name and node.group_name != "default", key
        assert node.kinds, key
        assert node.description, key


def test_lineage_matches_the_design(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()

    def parents(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    assert parents("flight_features") == {"raw_flights", "weather"}
    assert parents("training_set") == {"flight_features"}
    assert parents("candidate_model") == {"training_set"}
    assert parents("candidate_evaluation") == {"candidate_model", "training_set"}
    assert parents("champion_model") == {"candidate_evaluation"}
