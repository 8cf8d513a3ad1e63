"""Stage 4 logic: which pairs are kept, refined or dropped after labelling (no Dagster, no models)."""

from __future__ import annotations

from dataclasses import dataclass

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
