"""Self-curation labels by constrained choice (METHOD.md stage 4), and the generate-then-parse baseline.

:func:`score_pairs` reads the judge model's probabilities of the answers "1", "2", "3" at the position right
after :data:`~xinst_assets.core.prompts.JUDGE_PROMPT` and records, per pair, the distribution, the expected
score and the most likely label. Every pair gets a label: there is no text to parse. :func:`label_by_generation`
is the usual alternative (let the model write, then look for a digit); it exists to measure how much that loses
(a peer re-implementation of self-curation lost about 45% of its judge outputs to parse failures).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from xinst_assets.core.prompts import JUDGE_CHOICES, DecodingParams, greedy, judge_prompt
from xinst_assets.inference.base import InferenceBackend

LABELS: tuple[int, ...] = tuple(int(c) for c in JUDGE_CHOICES)
SCORE_TASK = "self_curation_label"
# A judgement is one digit; a few tokens leave room for a leading space or newline and show what else the
# model writes when it does not comply.
GENERATED_LABEL_MAX_NEW_TOKENS = 8
_LEADING_LABEL = re.compile(r"^\W*([123])(?!\d)")


@dataclass(frozen=True)
class PairScore:
    """The judge's distribution over the labels 1-3, its expectation, and the most likely label.

    ``label`` is the argmax; a tie goes to the lower label (a tie never promotes a pair).
    """

    probs: Mapping[int, float]
    expected: float
    label: int

    @classmethod
    def from_distribution(cls, dist: Mapping[str, float]) -> PairScore:
        """Build from a choice distribution keyed "1"/"2"/"3" (as :meth:`choice_logprobs` returns it)."""
        total = sum(dist.get(c, 0.0) for c in JUDGE_CHOICES)
        if not total > 0:  # the backends always return a distribution; this guards a foreign backend
            raise ValueError(f"empty choice distribution {dict(dist)!r}: the backend read no probability")
        probs = {int(c): dist.get(c, 0.0) / total for c in JUDGE_CHOICES}
        expected = sum(label * p for label, p in probs.items())
        label = max(LABELS, key=lambda k: (probs[k], -k))
        return cls(probs=probs, expected=expected, label=label)


def judge_prompts(pairs: Sequence[tuple[str, str]], lang_name: str) -> list[str]:
    """The judge prompt for each (instruction, response) pair."""
    out = []
    for i, pair in enumerate(pairs):
        if len(pair) != 2 or not all(isinstance(x, str) for x in pair):
            raise TypeError(f"pair #{i} must be (instruction, response) strings, got {pair!r}")
        out.append(judge_prompt(pair[0], pair[1], lang_name))
    return out


def score_pairs(
    backend: InferenceBackend, pairs: Sequence[tuple[str, str]], lang_name: str
) -> list[PairScore]:
    """Label each (instruction, response) pair 1-3 by constrained choice; aligned with ``pairs``.

    To skip pairs already judged by the same model, pass a ``CachedBackend(backend, cache, SCORE_TASK)``.
    """
    dists = backend.choice_logprobs(judge_prompts(pairs, lang_name), list(JUDGE_CHOICES))
    return [PairScore.from_distribution(d) for d in dists]


def parse_label(text: str) -> int | None:
    """The label a generated judgement starts with (1, 2 or 3, after optional spaces/punctuation), else None."""
    match = _LEADING_LABEL.match(text)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class GeneratedLabels:
    """Labels parsed from generated judgements; ``None`` where the text held no label."""

    labels: list[int | None]
    texts: list[str]

    @property
    def unparseable(self) -> int:
        return sum(label is None for label in self.labels)


def label_by_generation(
    backend: InferenceBackend,
    pairs: Sequence[tuple[str, str]],
    lang_name: str,
    params: DecodingParams | None = None,
) -> GeneratedLabels:
    """The generate-then-parse baseline: generate a short judgement (greedy by default) and parse its digit."""
    params = params or greedy(GENERATED_LABEL_MAX_NEW_TOKENS)
    texts = [g.text for g in backend.generate(judge_prompts(pairs, lang_name), params)]
    return GeneratedLabels(labels=[parse_label(t) for t in texts], texts=texts)
