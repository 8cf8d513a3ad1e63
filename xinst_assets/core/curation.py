"""Stage 4 logic: which pairs are kept, refined or dropped after labelling, and what each self-training round
did (no Dagster, no models)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from xinst_assets.core.lid import LanguageIdentifier
from xinst_assets.core.text import normalise


@dataclass(frozen=True)
class CurationRules:
    """Thresholds of self-curation."""

    accept_label: int = 3  # X-Instruction keeps level-3 pairs
    refine_label: int = 2  # level-2 pairs are rewritten, then re-labelled
    min_refined_chars: int = 40  # a rewrite shorter than this is no answer
    refined_lid_min: float | None = 0.3  # a rewrite must be in the partition's language


def refined_rejection(
    refined: str, original: str, lang_code: str, identifier: LanguageIdentifier, rules: CurationRules
) -> str | None:
    """Why a rewrite of a level-2 response is unusable, or None: empty, too short, unchanged, wrong language."""
    text = refined.strip()
    if not text:
        return "refine_empty"
    if len(text) < rules.min_refined_chars:
        return "refine_too_short"
    if normalise(text) == normalise(original):
        return "refine_unchanged"
    pred = identifier.predict([text])[0]
    if pred.lang != lang_code and not (pred.runner_up == lang_code and pred.runner_up_score >= (rules.refined_lid_min or 0)):
        return f"refine_wrong_language:{pred.lang}"
    if rules.refined_lid_min is not None and pred.lang == lang_code and pred.score < rules.refined_lid_min:
        return "refine_low_language_score"
    return None


@dataclass(frozen=True)
class RoundSummary:
    """What one self-curation round did for a language: texts graded, how many came out accepted (after
    refinement) or rejected, rewrites made, and the generator whose instructions were graded."""

    round: int
    graded: int
    accepted: int
    rejected: int
    refined: int
    generator: str


def round_summaries(history: Iterable[Mapping[str, Any]], accept_label: int) -> list[RoundSummary]:
    """Per round, from its graded rows (``round``, ``doc_id``, ``label``, ``refined``, ``generator``): a text is
    accepted in a round when its best row of that round (original or rewrite) reaches ``accept_label``."""
    rounds: dict[int, dict[str, Any]] = {}
    for row in history:
        entry = rounds.setdefault(int(row["round"]), {"best": {}, "refined": 0, "generator": row["generator"]})
        if row["refined"]:
            entry["refined"] += 1
        best = entry["best"]
        best[row["doc_id"]] = max(best.get(row["doc_id"], 0), int(row["label"]))
    out = []
    for number in sorted(rounds):
        entry = rounds[number]
        accepted = sum(label >= accept_label for label in entry["best"].values())
        out.append(RoundSummary(number, len(entry["best"]), accepted, len(entry["best"]) - accepted,
                                entry["refined"], entry["generator"]))
    return out
