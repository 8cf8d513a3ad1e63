"""The asset graph as a user sees it in the UI: every asset spec and check, compared with a reviewed snapshot.

A change to the graph (a renamed asset, a lost dependency, a group or owner dropped, a check removed) fails here
first, with a readable diff. After an intended change, regenerate the snapshot and review it:

    XINST_UPDATE_SNAPSHOTS=1 .venv/bin/pytest xinst_assets_tests/test_definitions.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from xinst_assets.config import XinstConfig
from xinst_assets.definitions import build_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_specs.json"


def describe_graph(defs: dg.Definitions) -> dict[str, Any]:
    """What the UI shows of each asset and check, as plain JSON (sorted, so the snapshot diff is stable)."""
    graph = defs.resolve_asset_graph()
    assets: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitioned": type(partitions).__name__ if partitions else None,
            "pools": sorted(node.pools or []),
            "has_description": bool((node.description or "").strip()),
        }
    checks = sorted(key.to_user_string() for key in graph.asset_check_keys)
    jobs = sorted(job.name for job in defs.jobs or [] if not job.name.startswith("__"))
    return {
        "assets": assets,
        "checks": checks,
        "jobs": jobs,
        "schedules": sorted(s.name for s in defs.schedules or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
    }


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("home")
    config = XinstConfig.from_env({"XINST_HOME": str(home)})
    return describe_graph(build_definitions(config))


def test_the_asset_graph_matches_the_reviewed_snapshot(graph: dict[str, Any]) -> None:
    rendered = json.dumps(graph, indent=2, sort_keys=True) + "\n"
    if os.environ.get("XINST_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(rendered, encoding="utf-8")
    assert SNAPSHOT.exists(), f"no snapshot yet: run with XINST_UPDATE_SNAPSHOTS=1 to write {SNAPSHOT.name}"
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert graph == expected, "the asset graph changed: review it and regenerate the snapshot (module docstring)"


def test_every_asset_has_a_description_a_group_an_owner_and_a_kind(graph: dict[str, Any]) -> None:
    missing = {
        name: [field for field in ("group", "owners", "kinds", "has_description") if not spec[field]]
        for name, spec in graph["assets"].items()
    }
    assert {name: fields for name, fields in missing.items() if fields} == {}


def test_the_graph_runs_from_raw_text_to_evaluation(graph: dict[str, Any]) -> None:
    assets = graph["assets"]

    def upstream(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            for dep in assets[todo.pop()]["deps"]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    chain = ["raw_web_text", "language_filtered_text", "candidate_pairs", "scored_pairs",
             "diversified_dataset", "tuned_checkpoint", "evaluation"]
    for earlier, later in zip(chain, chain[1:]):
        assert earlier in upstream(later), f"{later} does not depend on {earlier}"
