"""InstructAlign: noise, objectives, language names, experience replay."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from xinst_assets.training.config import DataFile
from xinst_assets.training.instructalign import (
    BLANK,
    NOISE_COMBINATIONS,
    ParallelPair,
    alignment_example,
    alignment_examples,
    count_objectives,
    delete_words,
    infill_words,
    interleave_replay,
    noise_sentence,
    permute_words,
    read_pairs,
    split_units,
)
from xinst_assets_tests.training.conftest import PARALLEL_ROWS

PAIRS = [ParallelPair(r["en"], r["text"], "Indonesian") for r in PARALLEL_ROWS]
SENTENCE = "Kami menanam padi di sawah minggu lalu bersama para petani desa"


def test_noise_is_deterministic_under_a_seed_and_varies_with_it():
    first = [noise_sentence(SENTENCE, random.Random(f"s:{i}")) for i in range(20)]
    again = [noise_sentence(SENTENCE, random.Random(f"s:{i}")) for i in range(20)]
    other = [noise_sentence(SENTENCE, random.Random(f"t:{i}")) for i in range(20)]
    assert first == again
    assert first != other
    assert all(noisy != SENTENCE for noisy, _ in first)
    assert {kinds for _, kinds in first} <= set(NOISE_COMBINATIONS)


def test_alignment_examples_are_the_same_for_the_same_seed_and_differ_for_another():
    assert alignment_examples(PAIRS, seed=3) == alignment_examples(PAIRS, seed=3)
    assert alignment_examples(PAIRS, seed=3) != alignment_examples(PAIRS, seed=4)


def test_each_noise_does_what_its_name_says():
    words = SENTENCE.split()
    rng = random.Random(0)
    infilled = infill_words(words, 1.0, rng)
    assert infilled == [BLANK]  # a run of blanked words becomes one blank
    assert infill_words(words, 0.0, rng) == words
    assert delete_words(words, 0.0, rng) == words
    assert len(delete_words(words, 1.0, rng)) == 1  # never empty
    permuted = permute_words(words, rng)
    assert permuted != words and sorted(permuted) == sorted(words)
    assert permute_words(["sama", "sama"], rng) == ["sama", "sama"]


def test_noise_rates_follow_p_0_2():
    words = [f"w{i}" for i in range(20000)]
    rng = random.Random(1)
    kept = len(delete_words(words, 0.2, rng)) / len(words)
    assert kept == pytest.approx(0.8, abs=0.01)
    # Infilling merges runs of blanks into one, so count the words that survive it.
    survived = sum(1 for w in infill_words(words, 0.2, rng) if w != BLANK) / len(words)
    assert survived == pytest.approx(0.8, abs=0.01)


def test_thai_is_noised_by_syllables_not_by_whole_phrases():
    text = "ตลาดเปิดทุกเช้า"  # one whitespace token
    units, _ = split_units(text, "Thai")
    assert len(units) > 1
    noisy, _ = noise_sentence(text, random.Random(0), script="Thai", kinds=("delete",), deletion_prob=0.5)
    assert noisy != text and " " not in noisy


@pytest.mark.parametrize(
    "objective", ["translation", "bilingual_denoising", "monolingual_denoising", "semantic_similarity"]
)
def test_every_prompt_names_the_language_of_the_text_it_shows(objective):
    en_texts = {p.en for p in PAIRS}
    id_texts = {p.text for p in PAIRS}
    for index in range(len(PAIRS)):
        for seed in range(6):
            example = alignment_example(index, PAIRS, seed, objective=objective)
            assert example.objective == objective and example.shown
            for name, text in example.shown:
                assert f"\n{name}: {text}\n" in example.prompt
                if name == "English":
                    assert text in en_texts
                elif name == "Indonesian":
                    assert text in id_texts
                else:  # the noised sentence is a noised Indonesian sentence, named so
                    assert name == "Indonesian (noisy)"
                    assert text not in en_texts and text != PAIRS[index].text


def test_bilingual_denoising_shows_the_english_sentence_as_english_and_the_noisy_one_as_the_other_language():
    pair = PAIRS[5]
    example = alignment_example(5, PAIRS, seed=0, objective="bilingual_denoising")
    noisy = dict(example.shown)["Indonesian (noisy)"]
    assert f"English: {pair.en}\n" in example.prompt
    assert f"Indonesian (noisy): {noisy}\n" in example.prompt
    assert example.prompt.startswith("The Indonesian sentence below")
    assert example.prompt.endswith("\nIndonesian: ")
    assert example.target == pair.text


def test_translation_goes_both_ways_and_targets_the_named_language():
    directions = Counter()
    for index in range(len(PAIRS)):
        for seed in range(10):
            example = alignment_example(index, PAIRS, seed, objective="translation")
            pair = PAIRS[index]
            if example.target == pair.text:
                assert example.prompt.endswith("\nIndonesian: ") and f"English: {pair.en}\n" in example.prompt
                directions["en->id"] += 1
            else:
                assert example.target == pair.en
                assert (
                    example.prompt.endswith("\nEnglish: ") and f"Indonesian: {pair.text}\n" in example.prompt
                )
                directions["id->en"] += 1
    assert directions["en->id"] > 20 and directions["id->en"] > 20


def test_semantic_similarity_answers_no_only_for_mismatched_sentences():
    answers = Counter()
    for index in range(len(PAIRS)):
        for seed in range(10):
            example = alignment_example(index, PAIRS, seed, objective="semantic_similarity")
            shown = dict(example.shown)
            matched = shown["Indonesian"] == PAIRS[index].text
            assert example.target == ("yes" if matched else "no")
            assert shown["English"] == PAIRS[index].en
            answers[example.target] += 1
    assert answers["yes"] > 20 and answers["no"] > 20


def test_objectives_are_drawn_uniformly_by_default_and_by_weight_otherwise():
    pairs = PAIRS * 100
    counts = count_objectives(alignment_examples(pairs, seed=0))
    assert set(counts) == {
        "translation",
        "bilingual_denoising",
        "monolingual_denoising",
        "semantic_similarity",
    }
    assert all(160 <= n <= 240 for n in counts.values())  # 800 draws, 200 expected each
    only = count_objectives(alignment_examples(pairs, seed=0, objective_weights={"translation": 1.0}))
    assert only == {"translation": 800}


def test_replay_is_interleaved_one_to_one_by_default():
    mixed = interleave_replay(["a1", "a2", "a3", "a4"], ["r1", "r2"], ratio=1.0, seed=0)
    assert mixed[0::2] == ["a1", "a2", "a3", "a4"]
    replayed = mixed[1::2]
    # Every replay example is used once before any is used again (seeded shuffle, reshuffled per cycle).
    assert sorted(replayed[:2]) == ["r1", "r2"] and sorted(replayed[2:]) == ["r1", "r2"]
    assert interleave_replay(["a1", "a2", "a3", "a4"], ["r1", "r2"], ratio=1.0, seed=0) == mixed


def test_replay_ratio_sets_the_share_of_replay_examples():
    mixed = interleave_replay(list(range(100)), ["r"], ratio=0.5, seed=0)
    assert mixed.count("r") == 50
    assert interleave_replay(list(range(4)), [], ratio=0.0, seed=0) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="no replay data"):
        interleave_replay([1], [], ratio=1.0, seed=0)


def test_parallel_files_need_en_and_text_and_a_language(tmp_path):
    from xinst_assets.training.data import DataError
    from xinst_assets_tests.training.conftest import write_jsonl

    path = write_jsonl(tmp_path / "p.jsonl", PARALLEL_ROWS[:2] + [{"en": "", "text": "x"}])
    pairs, skipped = read_pairs(DataFile(str(path), lang="id"))
    assert [p.lang_name for p in pairs] == ["Indonesian", "Indonesian"] and skipped == 1
    with pytest.raises(DataError, match="lang_name"):
        read_pairs(DataFile(str(path)))
    bad = write_jsonl(tmp_path / "b.jsonl", [{"source": "a", "target": "b"}])
    with pytest.raises(DataError, match="needs columns 'en' and 'text'"):
        read_pairs(DataFile(str(bad), lang="id"))
