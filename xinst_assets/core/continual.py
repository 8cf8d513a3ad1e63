"""Continual tuning (METHOD.md stage 6, InstructAlign): where a run starts, and what it replays.

InstructAlign continues from a model that is already instruction-tuned and replays the instruction data that
model learned before, so that it learns a new language without forgetting how to follow instructions.

**Where a run starts** (``start_from``):

* ``base``: the configured base model;
* ``previous``: the previous tuned checkpoint, read from the checkpoint history that every tuning run records
  (never guessed from folder names): the newest one that was trained on other data or settings than this
  run, descends from the same base model, and whose folder still exists. "Other data than this run" is what
  makes a rerun idempotent: the same run again starts where it started the first time (not from its own
  result), so it has the same fingerprint and reuses its finished checkpoint instead of training again;
* ``auto`` (the default): ``previous`` for continual InstructAlign runs, ``base`` otherwise;
* anything else: a local folder or hub id of an instruction-tuned checkpoint.

``previous`` (and ``auto``) fall back to the base model when there is no previous checkpoint yet.

**What is replayed**: the separate replay set (the original English instruction data), never the new
cross-lingual data: a replay row identical to a row of the new data is dropped and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from xinst_assets.core.text import normalise

START_KEYWORDS = ("auto", "base", "previous")


@dataclass(frozen=True)
class CheckpointRecord:
    """One recorded checkpoint: where it is, what it was trained on and from."""

    path: str
    fingerprint: str | None
    data_fingerprint: str | None  # the run's data and settings, without its starting point
    started_from: str | None
    root_model: str | None  # the base model its line of checkpoints began with
    run_id: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class StartPoint:
    """The model a tuning run starts from, and why."""

    model: str
    how: str  # base | previous | given
    previous: CheckpointRecord | None = None
    skipped: tuple[str, ...] = ()  # recorded checkpoints passed over, with the reason

    def describe(self) -> str:
        """One line for logs and metadata."""
        if self.how == "previous":
            return f"the previous tuned checkpoint {self.model}"
        if self.how == "given":
            return f"the given checkpoint {self.model}"
        return f"the base model {self.model}"


def previous_checkpoint(
    history: Sequence[CheckpointRecord], data_fingerprint: str, root_model: str, exists: Callable[[str], bool]
) -> tuple[CheckpointRecord | None, list[str]]:
    """The newest record (``history`` is newest first) trained on other data than ``data_fingerprint``, from the
    same ``root_model``, whose folder ``exists``; and the records passed over, each with the reason."""
    skipped = []
    for record in history:
        if record.data_fingerprint == data_fingerprint:
            skipped.append(f"{record.path}: trained on this run's data (a rerun starts where the first run did)")
        elif record.root_model != root_model:
            skipped.append(f"{record.path}: descends from {record.root_model}, not {root_model}")
        elif not exists(record.path):
            skipped.append(f"{record.path}: folder gone")
        else:
            return record, skipped
    return None, skipped


def resolve_start(
    start_from: str, continual: bool, base_model: str, history: Sequence[CheckpointRecord], data_fingerprint: str,
    exists: Callable[[str], bool],
) -> StartPoint:
    """Where a tuning run starts (see the module docstring); ``continual`` says whether it is an InstructAlign
    run, which ``auto`` continues from the previous checkpoint."""
    choice = start_from.strip()
    if not choice:
        raise ValueError(f"start_from is empty: use one of {', '.join(START_KEYWORDS)} or a checkpoint folder")
    if choice == "base" or (choice == "auto" and not continual):
        return StartPoint(base_model, "base")
    if choice in ("auto", "previous"):
        record, skipped = previous_checkpoint(history, data_fingerprint, base_model, exists)
        if record is None:
            return StartPoint(base_model, "base", skipped=tuple(skipped))
        return StartPoint(record.path, "previous", record, tuple(skipped))
    return StartPoint(choice, "given")


@dataclass(frozen=True)
class ReplaySelection:
    """The replay rows a run uses, and how many were dropped because they are part of the new data."""

    rows: list[dict[str, Any]]
    dropped_as_new_data: int


def _key(text: str) -> str:
    return normalise(text)


def select_replay(
    replay: Iterable[dict[str, Any]], new_pairs: Iterable[tuple[str, str]], new_texts: Iterable[str] = ()
) -> ReplaySelection:
    """Replay rows ({instruction, response, ...}) that are not new data: a row whose (instruction, response)
    is a new pair, or whose response is a new response or a new parallel sentence, is dropped."""
    pairs = {(_key(i), _key(r)) for i, r in new_pairs}
    texts = {r for _, r in pairs} | {_key(t) for t in new_texts}
    kept, dropped = [], 0
    for row in replay:
        instruction, response = _key(row["instruction"]), _key(row["response"])
        if (instruction, response) in pairs or response in texts:
            dropped += 1
        else:
            kept.append(row)
    return ReplaySelection(kept, dropped)
