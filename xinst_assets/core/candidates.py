"""Stage 3 filters on generated instructions: keep non-empty English instructions, within length bounds,
that do not copy the text they were written for."""

from __future__ import annotations

import re
from dataclasses import dataclass

from xinst_assets.core.lid import LanguageIdentifier
from xinst_assets.core.text import normalise

# The generation prompt ends at "### English Instruction:"; a model that goes on writing a new section or a
# second instruction is cut at the next header or blank line.
_CUT = re.compile(r"\n\s*\n|###|\n\s*(?:Text|Instruction|Response)\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class CandidateRules:
    """Bounds on a generated instruction. X-Instruction's instructions average about 100 characters."""

    min_chars: int | None = 10  # shorter is not an instruction ("Write.")
    max_chars: int | None = 600  # longer is the model rambling or echoing the text
    english_code: str = "en"
    min_english_score: float | None = 0.5  # fastText probability of English
    # An instruction sharing a word 8-gram with the text, or contained in it, copies the text.
    copy_ngram: int | None = 8


def clean_instruction(generated: str) -> str:
    """The instruction part of a generation: cut at the first section break, whitespace collapsed."""
    return normalise(_CUT.split(generated.strip(), maxsplit=1)[0])


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise(text).lower().split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def copies_text(instruction: str, text: str, n: int) -> bool:
    """True when the instruction is a substring of the text or shares a word n-gram with it."""
    low_instr, low_text = normalise(instruction).lower(), normalise(text).lower()
    if len(low_instr) >= 20 and low_instr in low_text:
        return True
    return bool(_ngrams(instruction, n) & _ngrams(text, n))


def candidate_rejections(
    instructions: list[str],
    texts: list[str],
    finish_reasons: list[str | None],
    identifier: LanguageIdentifier,
    rules: CandidateRules = CandidateRules(),
) -> list[str | None]:
    """For each (cleaned instruction, source text), the reason it is dropped, or None to keep it."""
    reasons: list[str | None] = [None] * len(instructions)
    to_identify = []
    for i, (instruction, text, finish) in enumerate(zip(instructions, texts, finish_reasons)):
        if not instruction:
            reasons[i] = "candidate_empty"
        elif rules.min_chars is not None and len(instruction) < rules.min_chars:
            reasons[i] = "candidate_too_short"
        elif rules.max_chars is not None and len(instruction) > rules.max_chars:
            reasons[i] = "candidate_too_long"
        elif finish == "length" and rules.max_chars is not None and len(instruction) >= rules.max_chars // 2:
            reasons[i] = "candidate_unfinished"  # ran into max_new_tokens mid-instruction
        elif rules.copy_ngram is not None and copies_text(instruction, text, rules.copy_ngram):
            reasons[i] = "candidate_copies_text"
        else:
            to_identify.append(i)
    predictions = identifier.predict([instructions[i] for i in to_identify])
    for i, pred in zip(to_identify, predictions):
        if pred.lang != rules.english_code:
            reasons[i] = f"candidate_not_english:{pred.lang}"
        elif rules.min_english_score is not None and pred.score < rules.min_english_score:
            reasons[i] = "candidate_low_english_score"
    return reasons
