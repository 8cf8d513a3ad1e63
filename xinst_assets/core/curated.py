"""Small curated inputs: seed pairs, parallel sentence pairs, evaluation questions, replay instructions.

Each is JSONL, one file per language, from the embedded sample and from user-supplied files. Rows are
validated field by field; a bad row is returned with a reason instead of failing the file. The replay
instructions (the English instruction data a tuned model learned before) are one set, not one per language.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xinst_assets.core.text import stable_hash


@dataclass(frozen=True)
class CuratedKind:
    """One kind of curated file: its folder in the sample and the text fields every row must have."""

    name: str
    folder: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    id_field: str | None = None  # a field that already is the row's id; else a content hash of the required fields
    per_language: bool = True  # False: one set for every language (its files need no {lang} in their patterns)


SEED_PAIRS = CuratedKind("seed_pairs", "seed_pairs", ("instruction", "response"))
PARALLEL_PAIRS = CuratedKind("parallel_pairs", "parallel", ("en", "text"))
EVAL_QUESTIONS = CuratedKind("eval_questions", "eval", ("question",), ("question_en", "category"), id_field="id")
# English (instruction, response) pairs: the instruction data replayed by continual InstructAlign.
REPLAY_INSTRUCTIONS = CuratedKind("replay_instructions", "replay", ("instruction", "response"), per_language=False)
REPLAY_LANG = "en"  # the replay set's rows are stored under the pivot language


def curated_files(kind: CuratedKind, lang: str, sample_dir: Path | None, patterns: list[str]) -> list[Path]:
    """The embedded file of ``lang`` (if any) and the user files matching patterns with ``{lang}`` (for a set
    that is not per language, any glob; a ``{lang}`` in it stands for ``lang``)."""
    files = []
    if sample_dir is not None and (sample_dir / kind.folder / f"{lang}.jsonl").exists():
        files.append(sample_dir / kind.folder / f"{lang}.jsonl")
    for pattern in patterns:
        if kind.per_language and "{lang}" not in pattern:
            raise ValueError(f"{kind.name} pattern {pattern!r} must contain '{{lang}}'")
        files += [Path(p) for p in sorted(glob.glob(pattern.replace("{lang}", lang), recursive=True))]
    return files


def read_curated(kind: CuratedKind, path: Path, lang: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of one file as (good rows, rejected rows with ``reason``). Ids are stable content hashes."""
    good, bad = [], []
    source = path.name if path.parent.name == kind.folder else str(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        return [], [{"file": str(path), "line": None, "reason": "invalid_utf8", "detail": str(exc)}]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append({"file": str(path), "line": number, "reason": "malformed_json", "detail": exc.msg})
            continue
        if not isinstance(record, dict):
            bad.append({"file": str(path), "line": number, "reason": "not_an_object", "detail": type(record).__name__})
            continue
        missing = [f for f in kind.required if not isinstance(record.get(f), str) or not record[f].strip()]
        if missing:
            bad.append({"file": str(path), "line": number, "reason": "missing_field",
                        "detail": f"missing or empty: {', '.join(missing)}"})
            continue
        row = {f: record[f].strip() for f in kind.required}
        row.update({f: record.get(f) for f in kind.optional})
        row_id = record.get(kind.id_field) if kind.id_field else None
        row["id"] = str(row_id) if row_id else stable_hash(lang, *(row[f] for f in kind.required))
        row["source"] = source
        good.append(row)
    return good, bad
