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
