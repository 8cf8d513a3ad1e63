import unicodedata

import pytest

from xinst_assets.core.words import split_words, word_count


def test_hindi_words_keep_their_vowel_signs_and_viramas():
    words = ["नमस्ते", "दुनिया", "यह", "एक", "परीक्षा", "है"]
    assert split_words("नमस्ते दुनिया, यह एक परीक्षा है।", "Deva") == words


def test_bengali_words_keep_conjuncts_and_the_danda_is_not_a_word():
    words = ["আমি", "বাংলায়", "গান", "গাই", "ক্ষুধার্ত", "শিশু"]
    assert split_words("আমি বাংলায় গান গাই। ক্ষুধার্ত শিশু", "Beng") == words


def test_tamil_words_keep_the_pulli_inside_the_word():
    assert split_words("தமிழ்நாடு அரசு அறிவிப்பு.", "Taml") == ["தமிழ்நாடு", "அரசு", "அறிவிப்பு"]


def test_urdu_words_keep_the_zero_width_non_joiner_and_drop_the_urdu_full_stop():
    assert split_words("اردو\u200cزبان پاکستان کی قومی زبان ہے۔", "Arab") == [
        "اردو\u200cزبان",
        "پاکستان",
        "کی",
        "قومی",
        "زبان",
        "ہے",
    ]


def test_vietnamese_diacritics_stay_inside_words_whether_composed_or_decomposed():
    composed = "Tiếng Việt là ngôn ngữ chính thức."
    expected = ["Tiếng", "Việt", "là", "ngôn", "ngữ", "chính", "thức"]
    assert split_words(composed, "Latn") == expected
    decomposed = unicodedata.normalize("NFD", composed)
    assert [unicodedata.normalize("NFC", w) for w in split_words(decomposed, "Latn")] == expected


def test_apostrophes_and_hyphens_between_letters_join_one_word():
    assert split_words("İstanbul'da anak-anak bermain — 3,5 % _", "Latn") == [
        "İstanbul'da",
        "anak-anak",
        "bermain",
        "3",
        "5",
    ]


def test_thai_without_spaces_is_cut_into_syllables_and_nothing_is_lost():
    assert split_words("ประเทศไทย", "Thai") == ["ประ", "เทศ", "ไทย"]
    assert split_words("บ้านเล็กๆ เมืองหลวง", "Thai") == ["บ้าน", "เล็กๆ", "เมือง", "หลวง"]
    text = "ฉันไม่ชอบเปลี่ยนบ้านอาหารไทยอร่อยมาก"
    pieces = split_words(text, "Thai")
    assert "".join(pieces) == text and 10 <= len(pieces) <= 16


def test_a_thai_run_inside_a_latin_text_is_segmented_too():
    assert split_words("Menu: ประเทศไทย enak", "Latn") == ["Menu", "ประ", "เทศ", "ไทย", "enak"]


def test_lao_and_myanmar_runs_are_cut_into_syllables():
    assert split_words("ພາສາລາວ", "Laoo") == ["ພາ", "ສາ", "ລາວ"]
    assert split_words("မြန်မာဘာသာ", "Mymr") == ["မြန်", "မာ", "ဘာ", "သာ"]


def test_each_han_character_is_one_word_including_the_supplementary_planes():
    assert split_words("中文 𠀀", "Hani") == ["中", "文", "𠀀"]


def test_word_count_counts_what_split_words_returns():
    assert word_count("Kuih seri muka ialah kuih tradisional.", "Latn") == 6


def test_a_script_that_is_not_an_iso_15924_code_is_a_clear_error():
    with pytest.raises(ValueError, match="ISO 15924"):
        split_words("text", "latin")


# --- TextBatch: the same words for many texts at once ----------------------------------------------------

import random  # noqa: E402

from xinst_assets.core.text import normalise  # noqa: E402
from xinst_assets.core.words import TextBatch, Vocabulary  # noqa: E402
from xinst_assets.settings import SAMPLE_DIR  # noqa: E402

# Characters that exercise every rule: joiners, apostrophes and hyphens, marks in and out of canonical
# order, compositions (with a non-word "="), Thai/Lao/Khmer/Myanmar runs, Han, Hangul jamo, dotted capital
# I, Greek sigma, a supplementary-plane letter and symbol.
TRICKY = list(
    "aZ09 \n\t'’-‐‑_\u200c\u200d=≠¨΅ΣσςİIıiéè\u0301\u0300\u0323\u0302\u0338\u0307ệêẹ"
    "क़\u093c\u0928\u0929ো\u09c7\u09be\u0bbe\u0bc6ொ\u0627\u0654ไทยประเทศ\u0e48\u0e38\u0e31ພາສາខ្មែរ\u1025\u102e\u1026"
    "中文\uf900가\u1100\u1161\u11a8𠀀𝅗𝅥"
)


def _random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(TRICKY) for _ in range(rng.randint(0, 30))) for _ in range(count)]


def _sample_texts() -> list[str]:
    import json

    texts = []
    for path in sorted((SAMPLE_DIR / "raw").glob("*/*.jsonl")):
        texts += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    return texts


def test_a_batch_finds_exactly_the_words_of_split_words_on_the_sample_and_random_texts():
    texts = _sample_texts() + _random_texts(1, 3000) + ["", "a", "anak-anak --x"]
    batch = TextBatch(texts)
    assert len(batch.offsets) == len(texts) + 1
    for i, text in enumerate(texts):
        assert batch.words_of(i) == split_words(text), repr(text)
    assert batch.word_lengths.tolist() == [len(w) for w in batch.words]


def test_shingle_safe_texts_have_as_shingle_words_their_words_normalised_and_lower_cased():
    texts = _sample_texts() + _random_texts(2, 3000) + ["İSTANBUL'DA anak-anak", "ΑΣ.Β", "=\u0338", "i\u0e48\u0300"]
    batch = TextBatch(texts)
    safe = batch.shingle_safe
    assert safe[: len(_sample_texts())].all()  # every sample text takes the fast path
    assert not safe[-3] and not safe[-2] and not safe[-1]
    for i, text in enumerate(texts):
        if safe[i]:
            expected = split_words(normalise(text).lower())
            assert [unicodedata.normalize("NFC", w).lower() for w in batch.words_of(i)] == expected


def test_the_batch_nfc_check_agrees_with_unicodedata():
    texts = _sample_texts() + _random_texts(3, 4000)
    texts += [unicodedata.normalize(form, t) for t in texts[-500:] for form in ("NFC", "NFD")]
    batch = TextBatch(texts)
    assert batch.nfc.tolist() == [unicodedata.is_normalized("NFC", t) for t in texts]


def test_the_vocabulary_numbers_equal_words_equally_and_starts_afresh_when_full():
    vocabulary = Vocabulary(max_words=5)
    first = vocabulary.ids(["b", "a", "b"])
    assert first[0] == first[2] != first[1] and vocabulary.generation == 0
    vocabulary.ids(["c", "d", "e", "f"])  # 2 + 4 words would pass 5: a new generation, new numbers
    assert vocabulary.generation == 1 and len(vocabulary.words) == 4


def test_the_char_tables_are_saved_once_and_loaded_equal_and_a_broken_file_is_built_again(tmp_path, monkeypatch):
    import numpy as np

    from xinst_assets.core import words

    monkeypatch.setenv(words.CHAR_TABLES_CACHE_ENV, str(tmp_path / "tables"))
    built = words.build_char_tables()
    try:
        words.char_tables.cache_clear()
        first = words.char_tables()  # built and saved
        saved = list((tmp_path / "tables").glob("*.npz"))
        assert len(saved) == 1
        words.char_tables.cache_clear()
        loaded = words.char_tables()  # loaded from the file
        for name in words.CharTables._fields:
            assert np.array_equal(getattr(built, name), getattr(first, name))
            assert np.array_equal(getattr(built, name), getattr(loaded, name))
            assert getattr(built, name).dtype == getattr(loaded, name).dtype
        saved[0].write_bytes(b"not an npz file")
        words.char_tables.cache_clear()
        again = words.char_tables()
        assert np.array_equal(again.flags, built.flags) and saved[0].stat().st_size > 1_000_000
    finally:
        words.char_tables.cache_clear()
