"""Constrained-choice labels are never unparseable; the generate-then-parse baseline counts its failures."""

from __future__ import annotations

import pytest

from xinst_assets.core.prompts import judge_prompt
from xinst_assets.inference.cache import CachedBackend, GenerationCache
from xinst_assets.inference.scoring import (
    SCORE_TASK,
    PairScore,
    judge_prompts,
    label_by_generation,
    parse_label,
    score_pairs,
)
from xinst_assets.inference.transformers_backend import TransformersBackend
from xinst_assets_tests.inference.conftest import PAIRS, CountingBackend


def test_every_pair_gets_a_distribution_an_expected_score_and_a_label(backend: TransformersBackend) -> None:
    scores = score_pairs(backend, PAIRS, "Indonesian")
    assert len(scores) == len(PAIRS)
    for score in scores:
        assert set(score.probs) == {1, 2, 3}
        assert sum(score.probs.values()) == pytest.approx(1.0)
        assert score.expected == pytest.approx(sum(k * p for k, p in score.probs.items()))
        assert score.label == max(score.probs, key=score.probs.get)
    assert score_pairs(backend, PAIRS, "Indonesian") == scores


def test_scores_match_the_choice_probabilities_of_the_judge_prompt(backend: TransformersBackend) -> None:
    [score] = score_pairs(backend, PAIRS[:1], "Thai")
    [dist] = backend.choice_logprobs([judge_prompt(*PAIRS[0], "Thai")], ["1", "2", "3"])
    assert score.probs == pytest.approx({1: dist["1"], 2: dist["2"], 3: dist["3"]})


def test_a_tie_goes_to_the_lower_label_and_the_expectation_is_exact() -> None:
    score = PairScore.from_distribution({"1": 0.1, "2": 0.45, "3": 0.45})
    assert score.label == 2
    assert score.expected == pytest.approx(0.1 + 0.9 + 1.35)


def test_an_empty_distribution_is_an_error_not_a_silent_label() -> None:
    with pytest.raises(ValueError, match="empty choice distribution"):
        PairScore.from_distribution({})


def test_scoring_through_a_cached_backend_judges_each_pair_once(backend: TransformersBackend) -> None:
    counting = CountingBackend(backend)
    cached = CachedBackend(counting, GenerationCache.in_memory(), task=SCORE_TASK)
    first = score_pairs(cached, PAIRS, "Indonesian")
    assert score_pairs(cached, PAIRS, "Indonesian") == first
    assert counting.calls == 1


@pytest.mark.parametrize(
    ("text", "label"),
    [("3", 3), (" 2", 2), ("\n1 because it answers", 1), ("**2**", 2), ("3.", 3), ("10", None),
     ("The rating is 3", None), ("", None), ("four", None)],
)
def test_a_generated_label_is_the_digit_the_text_starts_with(text: str, label: int | None) -> None:
    assert parse_label(text) == label


def test_the_generation_baseline_counts_unparseable_outputs(backend: TransformersBackend) -> None:
    result = label_by_generation(backend, PAIRS, "Indonesian")
    assert len(result.labels) == len(result.texts) == len(PAIRS)
    assert result.unparseable == sum(parse_label(t) is None for t in result.texts)
    assert result.unparseable == len(PAIRS)  # a random tiny model never starts with a digit


def test_pairs_must_be_instruction_response_strings() -> None:
    with pytest.raises(TypeError, match="pair #1"):
        judge_prompts([("a", "b"), ("only one",)], "Thai")  # type: ignore[list-item]
