"""Labelled judgements for training a curator from seed pairs: the three levels, held-out pairs kept apart."""

from collections import Counter

import pytest

from xinst_assets.core.judgements import (
    Judgement,
    JudgementRules,
    SeedPair,
    judgement_sets,
    judgements,
    partial_response,
    separation,
    split_heldout,
)


def _pairs(lang: str, n: int) -> list[SeedPair]:
    return [SeedPair(f"Write note number {k} about {lang}.", f"{lang} jibu la {k}: " + "neno " * (10 + k), lang)
            for k in range(n)]


def test_each_seed_pair_gives_a_matched_a_partial_and_a_shuffled_judgement():
    pairs = _pairs("Swahili", 4)
    made = judgements(pairs, JudgementRules())
    assert sorted(j.kind for j in made) == ["matched"] * 4 + ["partial"] * 4 + ["shuffled_same_language"] * 4
    by_kind = {kind: [j for j in made if j.kind == kind] for kind in ("matched", "partial", "shuffled_same_language")}
    assert {(j.instruction, j.response) for j in by_kind["matched"]} == {(p.instruction, p.response) for p in pairs}
    assert all(j.label == 3 for j in by_kind["matched"])
    assert all(j.label == 1 for j in by_kind["shuffled_same_language"])
    originals = {p.instruction: p.response for p in pairs}
    for j in by_kind["partial"]:
        assert j.label == 2 and originals[j.instruction].startswith(j.response)
        assert len(j.response) < len(originals[j.instruction])
    for j in by_kind["shuffled_same_language"]:  # another pair's response, never the instruction's own
        assert j.response != originals[j.instruction] and j.response in originals.values()


def test_a_shuffled_response_comes_from_the_whole_seed_set_and_its_kind_says_whose_language_it_is():
    made = judgements(_pairs("Swahili", 3) + _pairs("Thai", 3), JudgementRules())
    shuffled = [j for j in made if j.kind.startswith("shuffled")]
    assert len(shuffled) == 6
    for j in shuffled:  # the instruction keeps its own language; the kind says whether the response shares it
        same = j.response.startswith(j.lang_name)
        assert j.kind == ("shuffled_same_language" if same else "shuffled_other_language")
    assert any(j.kind == "shuffled_other_language" for j in shuffled)


def test_a_partial_response_is_cut_at_a_word_boundary():
    assert partial_response("alpha beta gamma delta", 0.5) == "alpha beta"
    assert partial_response("single", 0.5) == "sin"  # one long word: cut inside it rather than give nothing


def test_held_out_pairs_do_not_depend_on_row_order_and_never_train():
    pairs = _pairs("Swahili", 12) + _pairs("Thai", 12) + _pairs("Tamil", 3)
    train, held = split_heldout(pairs, JudgementRules())
    again_train, again_held = split_heldout(list(reversed(pairs)), JudgementRules())
    assert set(held) == set(again_held) and set(train) == set(again_train)
    assert not set(train) & set(held)
    assert sum(p.lang_name == "Swahili" for p in held) == 2 and sum(p.lang_name == "Thai" for p in held) == 2
    assert not any(p.lang_name == "Tamil" for p in held)  # too few pairs to hold any out

    train_j, held_j = judgement_sets(pairs, JudgementRules())
    held_texts = {p.response for p in held} | {p.instruction for p in held}
    assert not any(j.response in held_texts or j.instruction in held_texts for j in train_j)
    held_responses = {p.response for p in held}
    assert all(j.instruction in held_texts and any(r.startswith(j.response) for r in held_responses)
               for j in held_j)


def test_separation_reports_acceptance_and_mean_score_per_kind_and_for_all_shuffled_pairs():
    examples = [Judgement("i", "r", "Swahili", level, kind)
                for level, kind in ((3, "matched"), (3, "matched"), (1, "shuffled_other_language"),
                                    (1, "shuffled_same_language"))]
    sep = separation(examples, labels=[3, 2, 1, 3], expected=[2.8, 2.2, 1.2, 2.6])
    assert sep.accepted == {"matched": 0.5, "shuffled_other_language": 0.0, "shuffled_same_language": 1.0,
                            "shuffled": 0.5}
    assert sep.mean_expected["matched"] == pytest.approx(2.5)
    assert sep.margin == 0.0 and not sep.separates
    assert sep.summary() == (
        "at label 3: matched: accepted 50% of 2, mean score 2.50; shuffled_other_language: accepted 0% of 1, mean "
        "score 1.20; shuffled_same_language: accepted 100% of 1, mean score 2.60; shuffled: accepted 50% of 2, mean "
        "score 1.90")
    assert separation(examples, [3, 3, 1, 2], [2.9, 2.8, 1.1, 2.0]).separates
    # The same acceptance shares from scores that all sit at a tie between "1" and "3" are no separation.
    tied = separation(examples, [3, 3, 1, 2], [2.01, 2.0, 1.99, 2.0])
    assert tied.score_gap == pytest.approx(0.01) and not tied.separates


def test_only_a_share_of_training_pairs_get_a_shuffled_judgement_and_every_held_out_pair_does():
    pairs = _pairs("Swahili", 40) + _pairs("Thai", 40)
    train, held = judgement_sets(pairs, JudgementRules(shuffled_share=0.5))
    kinds = Counter(j.kind.split("_")[0] for j in train)
    assert kinds["matched"] == 64 and kinds["partial"] == 64 and 20 <= kinds["shuffled"] <= 44
    held_kinds = Counter(j.kind.split("_")[0] for j in held)
    assert held_kinds["shuffled"] == held_kinds["matched"] == 16
    with pytest.raises(ValueError, match="shuffled_share"):
        JudgementRules(shuffled_share=1.5)
