"""InstructAlign (Cahyawijaya et al., SEALP 2023): alignment objectives on parallel pairs + experience replay.

From a parallel pair (English sentence, sentence in language L) one objective is drawn per example
(uniformly by default, seeded):

* ``translation``: English -> L or L -> English (direction drawn too);
* ``bilingual_denoising``: a noised sentence in L plus its clean English translation -> the clean L sentence;
* ``monolingual_denoising``: a noised sentence in L -> the clean L sentence;
* ``semantic_similarity``: do an English and an L sentence mean the same? -> "yes" / "no"; the "no" examples
  pair the English sentence with the L sentence of another pair (a mismatched negative).

Noise: word infilling (each word replaced by ``___`` with p=0.2, a run of replaced words becomes one blank),
word deletion (p=0.2), word permutation, and every combination of them. All randomness comes from a
``random.Random`` seeded by (seed, pair index), so an example is the same whatever the order or the process
that builds it.

Every sentence a prompt shows is introduced by the name of its own language (``Indonesian: ...``): the
original code's bilingual-denoising prompts swapped the two names, which a test here rules out.

Experience replay: previously learned instruction data is interleaved with the alignment examples, 1:1 by
default (``replay_ratio``), so the model keeps its instruction-following ability.

The prompt wordings are xinst's own (the paper's templates are not reused).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from xinst_assets.training.config import INSTRUCTALIGN_OBJECTIVES, DataFile
from xinst_assets.training.data import (
    PIVOT_NAME,
    DataError,
    TextExample,
    language_script,
    row_lang_name,
)

BLANK = "___"
NOISE_KINDS = ("infill", "delete", "permute")
# Every non-empty combination of the three noises, drawn uniformly.
NOISE_COMBINATIONS: tuple[tuple[str, ...], ...] = tuple(
    tuple(kind for bit, kind in enumerate(NOISE_KINDS) if mask >> bit & 1) for mask in range(1, 8)
)

TRANSLATION_PROMPT = "Translate the following text from {src} into {tgt}.\n{src}: {src_text}\n{tgt}: "
BILINGUAL_DENOISING_PROMPT = (
    "The {lang} sentence below has blanked, missing or shuffled words. Using its {other} translation, write"
    " the correct {lang} sentence.\n{other}: {other_text}\n{lang} (noisy): {noisy}\n{lang}: "
)
MONOLINGUAL_DENOISING_PROMPT = (
    "The {lang} sentence below has blanked, missing or shuffled words. Write the correct {lang} sentence."
    "\n{lang} (noisy): {noisy}\n{lang}: "
)
SIMILARITY_PROMPT = (
    "Do these two sentences mean the same thing? Answer yes or no.\n{name_a}: {text_a}\n{name_b}: {text_b}\n"
    "Answer: "
)


@dataclass(frozen=True)
class ParallelPair:
    """An English sentence and its translation into language ``lang_name``."""

    en: str
    text: str
    lang_name: str


@dataclass(frozen=True)
class AlignmentExample(TextExample):
    """A ``TextExample`` that also records which sentence it shows under which language name."""

    objective: str = ""
    shown: tuple[tuple[str, str], ...] = ()  # (language name as printed, text printed after it)


def read_pairs(file: DataFile, max_rows: int | None = None) -> tuple[list[ParallelPair], int]:
    """Read parallel pairs (rows {en, text} + lang_name/lang) from a file; return (pairs, rows skipped)."""
    from xinst_assets.training.data import read_rows

    pairs, skipped = [], 0
    for line, row in read_rows(file, max_rows):
        where = f"{file.path}:{line}"
        for key in ("en", "text"):
            if key not in row:
                raise DataError(f"{where}: a parallel pair needs columns 'en' and 'text' (got {sorted(row)})")
        en, text = row.get("en"), row.get("text")
        if not isinstance(en, str) or not isinstance(text, str) or not en.strip() or not text.strip():
            skipped += 1
            continue
        pairs.append(ParallelPair(en.strip(), text.strip(), row_lang_name(row, file, where)))
    return pairs, skipped


# --- Noise --------------------------------------------------------------------------------------------------


def split_units(text: str, script: str | None = None) -> tuple[list[str], list[bool]]:
    """Split a sentence into word units and, per unit, whether a space precedes it.

    Scripts written without spaces (Thai ...) are cut into orthographic syllables by ``core.words``.
    """
    from xinst_assets.core.words import SCRIPTIO_CONTINUA, split_words

    units: list[str] = []
    spaced: list[bool] = []
    for token in text.split():
        pieces = split_words(token, script) if script in SCRIPTIO_CONTINUA else [token]
        pieces = [p for p in pieces if p] or [token]
        for k, piece in enumerate(pieces):
            units.append(piece)
            spaced.append(k == 0 and bool(units[:-1]))
    return units, spaced


def join_units(units: Sequence[str], spaced: Sequence[bool]) -> str:
    """Inverse of :func:`split_units` (up to punctuation dropped inside space-less scripts)."""
    out = []
    for k, unit in enumerate(units):
        if k and (spaced[k] if k < len(spaced) else True):
            out.append(" ")
        out.append(unit)
    return "".join(out)


def infill_words(units: list[str], prob: float, rng: random.Random) -> list[str]:
    """Replace each unit by ``___`` with probability ``prob``; a run of blanks becomes one blank."""
    out: list[str] = []
    for unit in units:
        if rng.random() < prob:
            if not out or out[-1] != BLANK:
                out.append(BLANK)
        else:
            out.append(unit)
    return out


def delete_words(units: list[str], prob: float, rng: random.Random) -> list[str]:
    """Drop each unit with probability ``prob`` (keeping at least one)."""
    if not units:
        return []
    kept = [unit for unit in units if rng.random() >= prob]
    return kept or [rng.choice(units)]


def permute_words(units: list[str], rng: random.Random) -> list[str]:
    """Shuffle the units (a different order whenever the units are not all equal)."""
    if len(set(units)) < 2:
        return list(units)
    out = list(units)
    while out == units:
        rng.shuffle(out)
    return out


def noise_sentence(
    text: str,
    rng: random.Random,
    infill_prob: float = 0.2,
    deletion_prob: float = 0.2,
    script: str | None = None,
    kinds: Sequence[str] | None = None,
) -> tuple[str, tuple[str, ...]]:
    """Noise a sentence with one combination of infilling / deletion / permutation; return (noisy, kinds).

    ``kinds`` None draws one of the seven combinations. The result always differs from the input when the
    sentence has two or more distinct words: if chance left it unchanged, one word is blanked.
    """
    units, spaced = split_units(text, script)
    if kinds is None:
        kinds = rng.choice(NOISE_COMBINATIONS)
    unknown = set(kinds) - set(NOISE_KINDS)
    if unknown:
        raise ValueError(f"unknown noise {sorted(unknown)}; known: {NOISE_KINDS}")
    noisy = list(units)
    if "delete" in kinds:
        noisy = delete_words(noisy, deletion_prob, rng)
    if "infill" in kinds:
        noisy = infill_words(noisy, infill_prob, rng)
    if "permute" in kinds:
        noisy = permute_words(noisy, rng)
    if noisy == units and len(set(units)) >= 2:
        k = rng.randrange(len(noisy))
        noisy = noisy[:k] + [BLANK] + noisy[k + 1 :]
    # After deletions the spacing flags no longer line up with the units: space-separated scripts keep a space
    # between all units, space-less ones keep the original flags by position.
    if script is None or not any(not s for s in spaced[1:]):
        flags = [True] * len(noisy)
    else:
        flags = [spaced[k] if k < len(spaced) else True for k in range(len(noisy))]
    return join_units(noisy, flags), tuple(kinds)


# --- Objectives ---------------------------------------------------------------------------------------------


def _translation(pair: ParallelPair, rng: random.Random) -> AlignmentExample:
    if rng.random() < 0.5:
        src, src_text, tgt, tgt_text = PIVOT_NAME, pair.en, pair.lang_name, pair.text
    else:
        src, src_text, tgt, tgt_text = pair.lang_name, pair.text, PIVOT_NAME, pair.en
    prompt = TRANSLATION_PROMPT.format(src=src, tgt=tgt, src_text=src_text)
    return AlignmentExample(
        prompt, tgt_text, "instructalign", objective="translation", shown=((src, src_text),)
    )


def _bilingual_denoising(
    pair: ParallelPair, rng: random.Random, noise: Mapping[str, Any]
) -> AlignmentExample:
    noisy, _ = noise_sentence(pair.text, rng, script=language_script(pair.lang_name), **noise)
    prompt = BILINGUAL_DENOISING_PROMPT.format(
        lang=pair.lang_name, other=PIVOT_NAME, other_text=pair.en, noisy=noisy
    )
    shown = ((PIVOT_NAME, pair.en), (f"{pair.lang_name} (noisy)", noisy))
    return AlignmentExample(prompt, pair.text, "instructalign", objective="bilingual_denoising", shown=shown)


def _monolingual_denoising(
    pair: ParallelPair, rng: random.Random, noise: Mapping[str, Any]
) -> AlignmentExample:
    noisy, _ = noise_sentence(pair.text, rng, script=language_script(pair.lang_name), **noise)
    prompt = MONOLINGUAL_DENOISING_PROMPT.format(lang=pair.lang_name, noisy=noisy)
    shown = ((f"{pair.lang_name} (noisy)", noisy),)
    return AlignmentExample(
        prompt, pair.text, "instructalign", objective="monolingual_denoising", shown=shown
    )


def _semantic_similarity(
    index: int, pairs: Sequence[ParallelPair], rng: random.Random, same_language: Sequence[int]
) -> AlignmentExample:
    pair = pairs[index]
    other_text = pair.text
    answer = "yes"
    if rng.random() < 0.5 and len(same_language) > 1:
        # A mismatched negative: the L sentence of another pair of the same language with a different text
        # (a few draws; with only duplicates around, the example stays a positive one).
        for _ in range(8):
            candidate = pairs[rng.choice(same_language)].text
            if candidate != pair.text:
                other_text, answer = candidate, "no"
                break
    first = [(PIVOT_NAME, pair.en), (pair.lang_name, other_text)]
    if rng.random() < 0.5:
        first.reverse()
    (name_a, text_a), (name_b, text_b) = first
    prompt = SIMILARITY_PROMPT.format(name_a=name_a, text_a=text_a, name_b=name_b, text_b=text_b)
    return AlignmentExample(
        prompt, answer, "instructalign", objective="semantic_similarity", shown=tuple(first)
    )


def _by_language(pairs: Sequence[ParallelPair]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        groups.setdefault(pair.lang_name, []).append(i)
    return groups


def alignment_example(
    index: int,
    pairs: Sequence[ParallelPair],
    seed: int,
    objective_weights: Mapping[str, float] | None = None,
    infill_prob: float = 0.2,
    deletion_prob: float = 0.2,
    objective: str | None = None,
    by_language: Mapping[str, Sequence[int]] | None = None,
) -> AlignmentExample:
    """The alignment example of pair ``index``: one objective drawn with ``objective_weights`` (or forced).

    ``by_language`` (language name -> pair indices) saves recomputing the groups on each call.
    """
    rng = random.Random(f"instructalign:{seed}:{index}")
    weights = dict(objective_weights or {name: 1.0 for name in INSTRUCTALIGN_OBJECTIVES})
    names = [name for name in INSTRUCTALIGN_OBJECTIVES if weights.get(name, 0.0) > 0]
    drawn = rng.choices(names, weights=[weights[n] for n in names])[0]
    objective = objective or drawn
    noise = {"infill_prob": infill_prob, "deletion_prob": deletion_prob}
    pair = pairs[index]
    if objective == "translation":
        return _translation(pair, rng)
    if objective == "bilingual_denoising":
        return _bilingual_denoising(pair, rng, noise)
    if objective == "monolingual_denoising":
        return _monolingual_denoising(pair, rng, noise)
    if objective == "semantic_similarity":
        groups = by_language if by_language is not None else _by_language(pairs)
        return _semantic_similarity(index, pairs, rng, groups[pair.lang_name])
    raise ValueError(f"unknown objective {objective!r}; known: {INSTRUCTALIGN_OBJECTIVES}")


def alignment_examples(
    pairs: Sequence[ParallelPair],
    seed: int,
    objective_weights: Mapping[str, float] | None = None,
    infill_prob: float = 0.2,
    deletion_prob: float = 0.2,
) -> list[AlignmentExample]:
    """One alignment example per pair (deterministic under ``seed``)."""
    groups = _by_language(pairs)
    return [
        alignment_example(i, pairs, seed, objective_weights, infill_prob, deletion_prob, by_language=groups)
        for i in range(len(pairs))
    ]


# --- Experience replay --------------------------------------------------------------------------------------

T = TypeVar("T")
R = TypeVar("R")


def interleave_replay(alignment: Sequence[T], replay: Sequence[R], ratio: float, seed: int) -> list[T | R]:
    """Interleave replay examples with alignment examples, ``ratio`` replay examples per alignment example.

    Replay examples are taken in a seeded shuffled order and cycled (reshuffled) when there are fewer than
    needed; with ratio 1.0 the result alternates alignment, replay, alignment, replay ...
    """
    if ratio < 0:
        raise ValueError(f"replay ratio must be >= 0, got {ratio}")
    if ratio > 0 and not replay:
        raise ValueError("replay ratio > 0 but there is no replay data")
    rng = random.Random(f"replay:{seed}")
    pool: list[R] = []
    out: list[T | R] = []
    credit = 0.0
    for example in alignment:
        out.append(example)
        credit += ratio
        while credit >= 1.0 - 1e-9:
            if not pool:
                pool = list(replay)
                rng.shuffle(pool)
            out.append(pool.pop())
            credit -= 1.0
    return out


def count_objectives(examples: Iterable[Any]) -> dict[str, int]:
    """How many examples of each objective (replay rows count as ``replay``)."""
    counts: dict[str, int] = {}
    for example in examples:
        name = getattr(example, "objective", "") or "replay"
        counts[name] = counts.get(name, 0) + 1
    return counts
