"""Shared fixtures: a temporary data home, warehouse and raw sources for each test."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterable

import pytest

from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets.resources.raw_sources import RawSources
from xinst_assets.resources.storage import XinstStorage
from xinst_assets.store import Store


def write_jsonl(path: Path, records: Iterable[Any], compress: bool = False) -> Path:
    """Write records (dicts, or raw ``bytes``/``str`` lines written as they are) as JSONL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for record in records:
        if isinstance(record, bytes):
            lines.append(record)
        elif isinstance(record, str):
            lines.append(record.encode("utf-8"))
        else:
            lines.append(json.dumps(record, ensure_ascii=False).encode("utf-8"))
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def raw_root(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    root.mkdir()
    return root


@pytest.fixture
def xinst_config(home: Path, raw_root: Path) -> XinstConfig:
    return XinstConfig(registry=load_registry(), home=home, raw_patterns=[str(raw_root)])


@pytest.fixture
def resources(xinst_config: XinstConfig) -> dict[str, Any]:
    """The resources every stage needs, pointed at the temporary home."""
    return {
        "store": Store(path=str(xinst_config.warehouse)),
        "storage": XinstStorage(home=str(xinst_config.home)),
        "raw_sources": RawSources(patterns=xinst_config.raw_patterns),
    }


def asset_metadata(result, asset: str) -> dict[str, Any]:
    """The metadata values of ``asset``'s (first) materialization in a run's ``result``."""
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset])
    return {k: v.value for k, v in event.materialization.metadata.items()}


def materialize(
    config: XinstConfig, selection: str | list[str], partition: str | None = None,
    resource_overrides: dict | None = None, **kwargs,
):
    """Materialize assets of the real definitions (resources bound from ``config``) in process."""
    import dagster as dg

    from xinst_assets.definitions import build_definitions

    defs = build_definitions(config, resource_overrides)
    graph = defs.resolve_asset_graph()
    assets = [graph.assets_def_for_key(key) for key in graph.get_all_asset_keys()]
    unique = list({id(a): a for a in assets}.values())
    return dg.materialize(unique, selection=selection, partition_key=partition, **kwargs)
