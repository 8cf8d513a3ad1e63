"""Labelled judgements for training a curator from seed pairs (METHOD.md stage 4: "the base model tuned on
labelled seed judgements").

Seed pairs are good (English instruction, response in L) pairs. From them xinst builds examples of the three
levels of the self-curation scale, in the exact prompt the curator is asked at scoring time
(:data:`~xinst_assets.core.prompts.JUDGE_PROMPT`):

* ``matched`` -> 3: the pair as written;
* ``partial`` -> 2: the instruction with only the beginning of its response (cut at a word boundary), i.e. a
  related answer that stops short;
* ``shuffled_*`` -> 1: the instruction with the response of another pair of the whole seed set, i.e. an
  unrelated answer: mostly one in another language than the one asked for (``shuffled_other_language``),
  sometimes an unrelated one in the same language (``shuffled_same_language``).

A held-out share of each language's pairs is kept apart, by a hash of the pair (the same pairs whatever the
order or the other rows), and its judgements are built from held-out pairs only: a held-out shuffled example
never shows a response or instruction the curator trained on, so the measured separation is a held-out figure.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LEVELS = {"matched": 3, "partial": 2, "shuffled": 1}
KINDS = ("matched", "partial", "shuffled_other_language", "shuffled_same_language")
SHUFFLED = "shuffled"  # both shuffled kinds together, in a separation
# (xinst) A curator that separates matched from shuffled pairs scores them at least half a level apart on
# average; one whose acceptance shares differ while its mean scores are equal is deciding ties by noise.
MIN_SCORE_GAP = 0.5


@dataclass(frozen=True)
class SeedPair:
    """A seed pair: an English instruction and its response in the language ``lang_name``."""

    instruction: str
    response: str
    lang_name: str


@dataclass(frozen=True)
class Judgement:
    """One labelled example for the curator: a pair, its level on the 1-3 scale and how it was made."""

    instruction: str
    response: str
    lang_name: str
    label: int
    kind: str

    def row(self) -> dict[str, Any]:
        """The training row (``task: curator`` of the training module)."""
        return {"instruction": self.instruction, "response": self.response, "lang_name": self.lang_name,
                "label": self.label, "kind": self.kind}


@dataclass(frozen=True)
class JudgementRules:
    """How judgements are made from seed pairs."""

    # A fifth of each language's pairs (at least two, so that they can be shuffled among themselves) is held
    # out to measure the curator; the rest trains it.
    heldout_fraction: float = 0.2
    min_heldout: int = 2
    # A partial answer keeps this share of the response's characters (cut back to a word boundary): enough to
    # be clearly related, too little to be complete.
    partial_share: float = 0.35
    # (xinst) Shuffled judgements are made for this share of the training pairs (every held-out pair gets one).
    # The candidates a curator grades were written for their own texts, so an unrelated one is the exception, not
    # one in two: with fewer unrelated than matched examples, a curator that cannot tell a pair apart leans to
    # "related" instead of deciding each pair by noise, while one that can still learns what unrelated means.
    shuffled_share: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be within [0, 1), got {self.heldout_fraction}")
        if not 0.0 < self.partial_share < 1.0:
            raise ValueError(f"partial_share must be within (0, 1), got {self.partial_share}")
        if not 0.0 <= self.shuffled_share <= 1.0:
            raise ValueError(f"shuffled_share must be within [0, 1], got {self.shuffled_share}")


def _pair_key(pair: SeedPair, seed: int) -> str:
    text = "\x1f".join((str(seed), pair.lang_name, pair.instruction, pair.response))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _unit(key: str) -> float:
    """A hex hash as a number in [0, 1)."""
    return int(key[:13], 16) / 16**13


def split_heldout(pairs: Sequence[SeedPair], rules: JudgementRules) -> tuple[list[SeedPair], list[SeedPair]]:
    """(training pairs, held-out pairs): per language, the pairs with the smallest hashes are held out.

    A language with fewer than ``2 * min_heldout`` pairs is not held out at all (too few to train on).
    """
    train: list[SeedPair] = []
    heldout: list[SeedPair] = []
    for group in _by_language(pairs).values():
        ranked = sorted(group, key=lambda p: _pair_key(p, rules.seed))
        wanted = max(rules.min_heldout, round(len(group) * rules.heldout_fraction)) if rules.heldout_fraction else 0
        if len(group) < 2 * rules.min_heldout:
            wanted = 0
        held = {id(p) for p in ranked[:wanted]}
        heldout += [p for p in group if id(p) in held]
        train += [p for p in group if id(p) not in held]
    return train, heldout


def partial_response(response: str, share: float) -> str:
    """The first ``share`` of ``response``, cut back to the last word boundary (at least one word)."""
    cut = max(1, int(len(response) * share))
    head = response[:cut]
    if cut < len(response) and not response[cut].isspace():
        space = max(head.rfind(" "), head.rfind("\n"))
        if space > 0:
            head = head[:space]
    return head.rstrip()


def judgements(pairs: Sequence[SeedPair], rules: JudgementRules, shuffled_share: float = 1.0) -> list[Judgement]:
    """Matched, partial and shuffled judgements of ``pairs``; deterministic under ``rules.seed``.

    A shuffled judgement pairs an instruction (asked in its own language) with the response of another pair drawn
    from all of ``pairs``, as shuffling a multilingual seed set does: mostly a response in another language than
    the one asked for (``shuffled_other_language``), sometimes an unrelated one in the same language
    (``shuffled_same_language``); both are level 1 on the judging scale ("unrelated", "not in {lang_name}").
    Only ``shuffled_share`` of the pairs (chosen by hash) get a shuffled judgement.
    """
    out: list[Judgement] = []
    pool = sorted(pairs, key=lambda p: (p.lang_name, p.instruction, p.response))
    for lang_name, group in sorted(_by_language(pool).items()):
        rng = random.Random(f"judgements:{rules.seed}:{lang_name}")
        for pair in group:
            out.append(Judgement(pair.instruction, pair.response, lang_name, LEVELS["matched"], "matched"))
            partial = partial_response(pair.response, rules.partial_share)
            if partial and partial != pair.response:
                out.append(Judgement(pair.instruction, partial, lang_name, LEVELS["partial"], "partial"))
            others = [p for p in pool if p.instruction != pair.instruction and p.response != pair.response]
            if others and _unit(_pair_key(pair, rules.seed)) < shuffled_share:
                other = rng.choice(others)
                kind = "shuffled_same_language" if other.lang_name == lang_name else "shuffled_other_language"
                out.append(Judgement(pair.instruction, other.response, lang_name, LEVELS["shuffled"], kind))
    return out


def judgement_sets(pairs: Sequence[SeedPair], rules: JudgementRules) -> tuple[list[Judgement], list[Judgement]]:
    """(training judgements, held-out judgements), each built from its own side of :func:`split_heldout`
    (training pairs get shuffled judgements at ``rules.shuffled_share``, held-out pairs all of them); the
    training set is shuffled (seeded) so that levels and languages are interleaved."""
    train_pairs, heldout_pairs = split_heldout(pairs, rules)
    train = judgements(train_pairs, rules, rules.shuffled_share)
    random.Random(f"judgements-order:{rules.seed}").shuffle(train)
    return train, judgements(heldout_pairs, rules)


@dataclass(frozen=True)
class Separation:
    """How a curator's labels separate matched from shuffled (and partial) pairs at an acceptance level.

    Figures are per kind, plus ``shuffled`` for both shuffled kinds together.
    """

    accept_label: int
    counts: Mapping[str, int]  # judgements per kind
    accepted: Mapping[str, float]  # share of each kind labelled >= accept_label
    mean_expected: Mapping[str, float]  # mean expected score (1-3) per kind

    @property
    def margin(self) -> float:
        """Acceptance of matched pairs minus acceptance of shuffled pairs (1.0: perfect, 0: no separation)."""
        return self.accepted.get("matched", 0.0) - self.accepted.get("shuffled", 0.0)

    @property
    def score_gap(self) -> float:
        """Mean expected score of matched pairs minus that of shuffled pairs, in levels."""
        return self.mean_expected.get("matched", 0.0) - self.mean_expected.get(SHUFFLED, 0.0)

    @property
    def separates(self) -> bool:
        """Keeps most matched pairs, rejects most shuffled ones, and scores them at least
        :data:`MIN_SCORE_GAP` apart (acceptance shares alone can come from noise around a tie)."""
        return (self.accepted.get("matched", 0.0) > 0.5 and self.accepted.get(SHUFFLED, 1.0) < 0.5
                and self.score_gap >= MIN_SCORE_GAP)

    def summary(self) -> str:
        """One line: acceptance rates and mean expected scores per kind."""
        parts = [f"{kind}: accepted {self.accepted[kind]:.0%} of {self.counts[kind]}, mean score "
                 f"{self.mean_expected[kind]:.2f}" for kind in (*KINDS, SHUFFLED) if kind in self.counts]
        return f"at label {self.accept_label}: " + "; ".join(parts)


def separation(examples: Sequence[Judgement], labels: Sequence[int], expected: Sequence[float],
               accept_label: int = 3) -> Separation:
    """Measure how the curator's ``labels`` / ``expected`` scores (aligned with ``examples``) separate kinds."""
    if not len(examples) == len(labels) == len(expected):
        raise ValueError("examples, labels and expected scores must be aligned")
    by_kind: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for example, label, score in zip(examples, labels, expected):
        by_kind[example.kind].append((label, score))
        if example.kind.startswith(SHUFFLED):
            by_kind[SHUFFLED].append((label, score))
    return Separation(
        accept_label=accept_label,
        counts={k: len(v) for k, v in by_kind.items()},
        accepted={k: sum(label >= accept_label for label, _ in v) / len(v) for k, v in by_kind.items()},
        mean_expected={k: sum(score for _, score in v) / len(v) for k, v in by_kind.items()},
    )


def _by_language(pairs: Iterable[SeedPair]) -> dict[str, list[SeedPair]]:
    groups: dict[str, list[SeedPair]] = defaultdict(list)
    for pair in pairs:
        groups[pair.lang_name].append(pair)
    return dict(groups)
