import json
from pathlib import Path

import pytest

from xinst_assets.core.filtering import (
    Document,
    FilterDecision,
    FilterSettings,
    evaluate_on_labels,
    filter_documents,
    reason_counts,
    run_language_filter,
)
from xinst_assets.languages import load_registry
from xinst_assets.settings import SAMPLE_DIR

# The targets of stage 2 on the embedded sample, for every language.
MIN_RECALL = 0.95  # of the documents labelled clean, kept
MIN_PRECISION = 0.95  # of the kept documents, labelled clean (a kept duplicate counts as wrong)

INDONESIAN = (
    "Hari itu saya berkesempatan mengikuti kelas membatik di sebuah kampung batik yang sudah turun-temurun "
    "menekuni kerajinan ini. Kelas dipandu oleh seorang ibu perajin yang telah membatik sejak usia "
    "belasan tahun.\n"
    "Kami mulai dengan menggambar pola sederhana di atas kain mori menggunakan pensil. Setelah itu barulah "
    "tahap "
    "yang paling menegangkan: menorehkan malam panas memakai canting. Tangan harus stabil dan tidak boleh "
    "terlalu "
    "lama berhenti, kalau tidak malam akan menetes dan meninggalkan noda.\n"
    "Ibu perajin bercerita bahwa satu lembar batik tulis halus bisa dikerjakan berbulan-bulan, karena "
    "setiap warna "
    "membutuhkan proses pencelupan dan pelorodan tersendiri."
)
ENGLISH = (
    "That day I had the chance to join a batik class in a village where families have practised the craft "
    "for "
    "generations. The class was led by a woman who has been making batik since she was a teenager.\n"
    "We started by drawing a simple pattern on plain cotton with a pencil. Then came the most nerve-racking "
    "part: "
    "tracing hot wax with a small copper pen. Your hand has to stay steady and must not stop for too long, "
    "otherwise the wax drips and leaves a stain.\n"
    "She told us that a single piece of fine hand-drawn batik can take months, because every colour needs "
    "its own "
    "round of dyeing and wax removal."
)


@pytest.mark.parametrize("code", load_registry().codes)
def test_the_whole_filter_keeps_the_clean_sample_documents_and_only_them(code, identifier, registry, sample):
    sample = sample(code)
    if sample is None:
        pytest.skip(f"no sample data for {code} yet")
    docs, labels, groups = sample
    decisions = run_language_filter(docs, registry.get(code), identifier)
    result = evaluate_on_labels(decisions, labels, groups)[code]
    detail = f"{code}: kept {result.kept_by_label}, dropped {result.dropped_by_label}"
    assert result.recall >= MIN_RECALL, detail
    assert result.precision >= MIN_PRECISION, detail


def test_the_sample_has_labelled_documents_for_at_least_one_language(sample):
    present = [code for code in load_registry().codes if sample(code) is not None]
    assert present, f"no labelled sample language under {SAMPLE_DIR}"


def test_every_dropped_document_has_exactly_one_reason_named_after_its_filter(identifier, registry):
    indonesian = registry.get("id")
    short = "Terima kasih, Kak!"
    docs = [
        Document("keep", INDONESIAN, published_at="2024-01-01"),
        Document("english", ENGLISH),
        Document("short", short),
        Document("repost", INDONESIAN, published_at="2024-02-01"),
        Document("near", INDONESIAN.replace("Hari itu", "Minggu lalu"), published_at="2024-03-01"),
    ]
    decisions = run_language_filter(docs, indonesian, identifier)
    assert [(d.doc_id, d.keep, d.reason) for d in decisions] == [
        ("keep", True, None),
        ("english", False, "lid_wrong_language:en"),
        ("short", False, "quality_too_short"),
        ("repost", False, "dedup_exact_duplicate"),
        ("near", False, "dedup_near_duplicate"),
    ]
    assert [d.filter_name for d in decisions] == [None, "lid", "quality", "dedup", "dedup"]
    assert decisions[0].cluster_size == 3 and decisions[3].duplicate_of == decisions[4].duplicate_of == "keep"
    assert reason_counts(decisions) == {
        "kept": 1,
        "lid_wrong_language:en": 1,
        "quality_too_short": 1,
        "dedup_exact_duplicate": 1,
        "dedup_near_duplicate": 1,
    }


def test_length_bounds_are_checked_before_language_id_and_leave_the_lid_fields_empty(identifier, registry):
    [decision] = filter_documents([Document("s", "Pendek.")], registry.get("id"), identifier)
    assert decision.reason == "quality_too_short" and decision.lid_lang is None and decision.chars == 7


def test_survivors_of_lid_and_quality_carry_their_scores_and_word_count(identifier, registry):
    [decision] = filter_documents([Document("k", INDONESIAN)], registry.get("id"), identifier)
    assert decision.keep and decision.lid_lang == "id" and decision.lid_score >= 0.5
    assert decision.words == len(INDONESIAN.split())  # no whitespace token here is punctuation alone


def test_settings_are_per_language_and_recordable_as_json(registry):
    assert FilterSettings.for_language(registry.get("th")).quality.min_line_punct_ratio is None
    settings = FilterSettings.for_language(registry.get("fi"))
    assert settings.quality.min_line_punct_ratio == 0.12
    record = json.loads(json.dumps(settings.as_metadata()))
    assert record["minhash"]["num_perm"] == 112 and record["minhash"]["min_jaccard"] == 0.6
    assert record["minhash"]["jaccard_threshold"] == 0.435
    assert record["quality"]["max_top_ngram_char_fraction"][0] == [2, 0.2]
    assert record["lid_policy"]["confusable_margin"] == 0.1 and record["lid_policy"]["second_opinion"] is True
    assert record["lid_policy"]["sure_score"] == 0.9 and record["lid_policy"]["mixed"] is True


def _decision(doc_id: str, keep: bool, reason: str | None = None) -> FilterDecision:
    return FilterDecision(doc_id, "id", keep, reason)


def test_evaluation_counts_a_kept_duplicate_as_wrong_and_a_dropped_clean_document_as_missed():
    decisions = [_decision("a", True), _decision("b", False, "quality_too_short"), _decision("c", True)]
    result = evaluate_on_labels(decisions, ["clean", "clean", "near_duplicate"])["id"]
    assert (result.clean_total, result.clean_kept, result.kept_total) == (2, 1, 2)
    assert result.recall == 0.5 and result.precision == 0.5


def test_evaluation_accepts_either_copy_of_a_duplicate_group_as_the_survivor():
    decisions = [_decision("orig", False, "dedup_near_duplicate"), _decision("copy", True)]
    result = evaluate_on_labels(decisions, ["clean", "near_duplicate"], ["g", "g"])["id"]
    assert result.recall == 1.0 and result.precision == 1.0
    both = [_decision("orig", True), _decision("copy", True)]
    assert evaluate_on_labels(both, ["clean", "near_duplicate"], ["g", "g"])["id"].precision == 0.5


def test_misaligned_labels_are_a_clear_error():
    with pytest.raises(ValueError, match="aligned"):
        evaluate_on_labels([_decision("a", True)], [])


def test_the_sample_dir_is_inside_the_package():
    assert Path(SAMPLE_DIR).name == "sample" and Path(SAMPLE_DIR).parent.name == "data"


def test_the_screener_signs_the_kept_documents_from_the_words_it_split_for_quality(identifier, registry, sample):
    import numpy as np

    from xinst_assets.core.dedup import MinhashSigner
    from xinst_assets.core.filtering import DocumentScreener
    from xinst_assets.core.text import content_id

    for code in ("id", "th", "bn"):
        found = sample(code)
        if found is None:
            continue
        docs = found[0]
        lang = registry.get(code)
        screener = DocumentScreener(lang, identifier)
        screened = screener.screen(docs, content_keys=True)
        assert screened.decisions == filter_documents(docs, lang, identifier)
        kept = [docs[i] for i in screened.kept.tolist()]
        assert [d.doc_id for d in kept] == [d.doc_id for d in screened.decisions if d.keep]
        expected, has = MinhashSigner().signatures([d.text for d in kept], lang.script)
        assert np.array_equal(screened.signatures, expected) and screened.shingled == has
        assert screened.content_keys == [content_id(d.text) for d in kept]
