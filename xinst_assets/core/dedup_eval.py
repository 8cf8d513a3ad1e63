"""Near-duplicate accuracy against labelled groups (xinst_assets_tests/data/filter_eval/near_duplicates/).

Each group has one ``original``, its ``near_copy`` documents (what a crawl repeats of it) and
``hard_negative`` documents (the same template or topic, other content). Given the clusters dedup made,
per language:

* **near-copy recall**: the share of near copies in the same cluster as their group's original;
* **hard negatives merged**: hard negatives that share a cluster with any other labelled document (every
  document of the set is labelled, and a hard negative is a near duplicate of none of them);
* **groups split**: groups whose original and near copies are not all in one cluster;
* **groups merged**: clusters holding members of two or more groups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

ROLES = ("original", "near_copy", "hard_negative")


@dataclass(frozen=True)
class LabelledDocument:
    """One document of the labelled near-duplicate set."""

    id: str
    lang: str
    group: str
    role: str
    text: str


def load_near_duplicates(path: str | Path) -> list[LabelledDocument]:
    """The labelled documents of one JSONL file; a malformed record is a clear error naming its line."""
    out = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            doc = LabelledDocument(record["id"], record["lang"], record["group"], record["role"], record["text"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number}: not a near-duplicate record ({error})") from error
        if doc.role not in ROLES:
            raise ValueError(f"{path}:{number}: role {doc.role!r} is none of {ROLES}")
        out.append(doc)
    return out


@dataclass(frozen=True)
class NearDuplicateScore:
    """How the clusters of one language compare with its labelled groups."""

    lang: str
    groups: int
    near_copies: int
    copies_with_original: int
    hard_negatives: int
    negatives_merged: int
    groups_split: int
    groups_merged: int

    @property
    def recall(self) -> float:
        """The share of near copies clustered with their group's original."""
        return self.copies_with_original / self.near_copies if self.near_copies else 1.0


def score_near_duplicates(docs: Iterable[LabelledDocument], cluster_of: Mapping[str, str]) -> NearDuplicateScore:
    """Score clusters (``cluster_of``: labelled id -> any key naming its cluster, e.g. its representative)
    against the labels of one language's documents (see the module docstring)."""
    docs = list(docs)
    langs = {d.lang for d in docs}
    if len(langs) != 1:
        raise ValueError(f"score one language at a time, got {sorted(langs)}")
    missing = [d.id for d in docs if d.id not in cluster_of]
    if missing:
        raise ValueError(f"no cluster for {len(missing)} labelled documents, e.g. {missing[:3]}")
    by_group: dict[str, list[LabelledDocument]] = {}
    for d in docs:
        by_group.setdefault(d.group, []).append(d)
    members_of: dict[str, list[LabelledDocument]] = {}
    for d in docs:
        members_of.setdefault(cluster_of[d.id], []).append(d)
    copies = found = split = 0
    for group in by_group.values():
        originals = [d for d in group if d.role == "original"]
        if len(originals) != 1:
            raise ValueError(f"group {group[0].group} has {len(originals)} originals, expected 1")
        home = cluster_of[originals[0].id]
        near = [d for d in group if d.role == "near_copy"]
        copies += len(near)
        found += sum(cluster_of[d.id] == home for d in near)
        split += any(cluster_of[d.id] != home for d in near)
    negatives = [d for d in docs if d.role == "hard_negative"]
    merged = sum(len(members_of[cluster_of[d.id]]) > 1 for d in negatives)
    groups_merged = sum(len({d.group for d in members if d.role != "hard_negative"}) > 1
                        for members in members_of.values())
    return NearDuplicateScore(langs.pop(), len(by_group), copies, found, len(negatives), merged, split, groups_merged)
