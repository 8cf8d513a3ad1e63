"""Empty outputs from non-empty inputs: the outcome of a stage's ``output_not_empty`` check and its reason.

A stage that receives rows for a language and produces none has almost always gone wrong (a curator that
grades everything 2, a generator that writes no English, a tokenizer that drops every example): such a run
must not look like a success. Each stage counts what came in and what went out and, when nothing came out,
says why in the words a user acts on, for example ``0 pairs reached label 3: labels 1/2/3 = 0/32/0``.
A stage with no input passes (there was nothing to do; the stage before it reports why).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from xinst_assets.core.prompts import JUDGE_CHOICES

CHECK_NAME = "output_not_empty"
LABELS: tuple[int, ...] = tuple(int(c) for c in JUDGE_CHOICES)


@dataclass(frozen=True)
class OutputOutcome:
    """What a stage produced for one language from what it received; ``reason`` says why it is empty."""

    rows_in: int
    rows_out: int
    reason: str | None = None

    @property
    def passed(self) -> bool:
        """Passes when something came out, or when nothing came in."""
        return self.rows_out > 0 or self.rows_in == 0

    def metadata(self) -> dict[str, Any]:
        """The check's figures (and the reason when it fails)."""
        out: dict[str, Any] = {"rows_in": self.rows_in, "rows_out": self.rows_out}
        if not self.passed:
            out["reason"] = self.reason or f"0 rows out of {self.rows_in} in"
        elif self.rows_in == 0:
            out["reason"] = "no input: nothing to do"
        return out


def label_counts(labels: Iterable[int]) -> dict[int, int]:
    """How many pairs got each label 1-3 (every label present, zeros included)."""
    counts = {label: 0 for label in LABELS}
    for label in labels:
        counts[int(label)] = counts.get(int(label), 0) + 1
    return counts


def labels_text(counts: Mapping[int, int]) -> str:
    """``labels 1/2/3 = 0/32/0``."""
    keys = sorted(set(LABELS) | set(counts))
    return f"labels {'/'.join(map(str, keys))} = {'/'.join(str(counts.get(k, 0)) for k in keys)}"


def none_accepted_reason(counts: Mapping[int, int], accept_label: int, noun: str = "pairs") -> str:
    """Why no pair was accepted: ``0 pairs reached label 3: labels 1/2/3 = 0/32/0``."""
    return f"0 {noun} reached label {accept_label}: {labels_text(counts)}"


def all_dropped_reason(rows_in: int, noun_in: str, became: str, reasons: Mapping[str, int]) -> str:
    """Why every input row was dropped: ``0 of 32 texts became candidates: candidate_not_english 20, ...``.

    The reasons are listed most frequent first (at most eight, then how many others).
    """
    ordered = sorted(((n, r) for r, n in reasons.items() if n), key=lambda item: (-item[0], item[1]))
    listed = ", ".join(f"{r} {n}" for n, r in ordered[:8])
    if len(ordered) > 8:
        listed += f", {len(ordered) - 8} other reasons"
    return f"0 of {rows_in} {noun_in} {became}" + (f": {listed}" if listed else "")
