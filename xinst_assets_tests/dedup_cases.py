"""Synthetic near-duplicate cases with known word 5-gram similarities, for the dedup tests.

Texts are made of pseudo-words that never repeat across a case's parts, so two texts share exactly the
5-grams of the passages they share: an edit in one place lowers a copy's similarity by a predictable amount.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from xinst_assets.core.dedup import shingles
from xinst_assets.core.dedup_eval import LabelledDocument

_SYLLABLES = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"]


class Words:
    """Distinct pseudo-words (two to four syllables) in a reproducible order."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._used: set[str] = set()

    def take(self, count: int) -> list[str]:
        out = []
        while len(out) < count:
            word = "".join(self._rng.choices(_SYLLABLES, k=self._rng.randint(2, 4)))
            if word not in self._used:
                self._used.add(word)
                out.append(word)
        return out

    def sentences(self, count: int, length: int = 12) -> list[str]:
        return [" ".join(self.take(length)).capitalize() + "." for _ in range(count)]


def jaccard_of(a: str, b: str, script: str | None = "Latn") -> float:
    """The exact word 5-gram Jaccard similarity of two texts (the project's shingling)."""
    first = {tuple(g) for g in shingles(a, script, 5)}
    second = {tuple(g) for g in shingles(b, script, 5)}
    return len(first & second) / len(first | second) if first | second else 1.0


@dataclass
class Group:
    """An original, copies each edited in its own place, and hard negatives (its template, other content)."""

    name: str
    original: str
    copies: list[str]
    negatives: list[str] = field(default_factory=list)

    def members(self) -> list[str]:
        return [self.original, *self.copies]


def edited_group(words: Words, name: str, copies: int = 3, sentences: int = 14, edited: int = 2,
                 shared: int = 1) -> Group:
    """An article of ``sentences`` sentences between a fixed header and footer; copy ``k`` replaces its own
    ``edited`` sentences (by default about 0.74 similar to the original and 0.54 to each other); the hard
    negative keeps the header, the footer and the first ``shared`` sentences (the site's template and intro),
    with a body of its own."""
    header, footer = words.sentences(1)[0], words.sentences(1)[0]
    body = words.sentences(sentences)
    original = " ".join([header, *body, footer])
    out = []
    for k in range(copies):
        changed = list(body)
        start = 1 + k * (sentences - 1) // copies
        changed[start : start + edited] = words.sentences(edited)
        out.append(" ".join([header, *changed, footer]))
    negative = " ".join([header, *body[:shared], *words.sentences(sentences - shared), footer])
    return Group(name, original, out, [negative])


def synthetic_labelled_set(seed: int, groups: int, lang: str = "sw") -> list[LabelledDocument]:
    """Groups in the labelled set's format, harder than it: short articles whose copies each replace one to
    three sentences of their own (0.6-0.9 similar to the original, 0.4-0.8 to each other) and hard negatives
    that keep the site's header, footer and six to nine sentences of intro (0.3-0.5 similar)."""
    words, rng = Words(seed), random.Random(seed)
    out = []
    for g in range(groups):
        group = edited_group(words, f"{lang}-syn-{g:03d}", copies=rng.randint(2, 4), edited=rng.randint(1, 3),
                             shared=rng.randint(6, 9))
        roles = [("original", group.original), *(("near_copy", c) for c in group.copies),
                 *(("hard_negative", n) for n in group.negatives)]
        out += [LabelledDocument(f"{group.name}-{chr(ord('a') + k)}", lang, group.name, role, text)
                for k, (role, text) in enumerate(roles)]
    return out
