from dataclasses import replace

import pytest

from xinst_assets.core.quality import (
    BOILERPLATE_MARKERS,
    INTERFACE_MARKERS,
    QualityThresholds,
    apply_overrides,
    assess_quality,
    check_quality,
    is_boilerplate_line,
    quality_signals,
    thresholds_for,
)
from xinst_assets.languages import Language

# Short original paragraphs (a school tree-planting day), one per script under test.
HINDI = (
    "आज सुबह गाँव के स्कूल में बच्चों ने पेड़ लगाए। शिक्षकों ने उन्हें पौधों की देखभाल करना सिखाया। "
    "हर बच्चे ने अपने पौधे का नाम रखा और रोज़ पानी देने का वादा किया। गाँव के बुज़ुर्गों ने कहा कि ऐसे काम "
    "से "
    "हवा साफ़ रहती है और गर्मी कम होती है। शाम को सबने मिलकर मिठाई बाँटी और अगले महीने फिर मिलने का तय किया।"
)
BENGALI = (
    "আজ সকালে গ্রামের স্কুলে ছাত্রছাত্রীরা গাছ লাগিয়েছে। শিক্ষকেরা তাদের চারাগাছের যত্ন নিতে শিখিয়েছেন। "
    "প্রত্যেকে নিজের গাছের একটি নাম দিয়েছে এবং রোজ জল দেওয়ার প্রতিশ্রুতি দিয়েছে। গ্রামের প্রবীণরা বললেন "
    "যে "
    "এমন কাজে বাতাস পরিষ্কার থাকে এবং গরম কমে। বিকেলে সবাই মিলে মিষ্টি ভাগ করে খেল এবং পরের মাসে আবার দেখা "
    "করার সিদ্ধান্ত নিল।"
)
TAMIL_SHORT = (
    "இன்று காலை கிராமப் பள்ளியில் மாணவர்கள் மரக்கன்றுகளை நட்டனர். ஆசிரியர்கள் அவற்றை எப்படிப் "
    "பராமரிப்பது என்று கற்றுக் கொடுத்தனர். ஒவ்வொரு மாணவரும் தன் கன்றுக்கு ஒரு பெயர் வைத்து தினமும் "
    "தண்ணீர் ஊற்றுவதாக உறுதியளித்தார்."
)
URDU = (
    "آج صبح گاؤں کے اسکول میں بچوں نے درخت لگائے۔ اساتذہ نے انہیں پودوں کی دیکھ بھال کرنا سکھایا۔ "
    "ہر بچے نے اپنے پودے کا نام رکھا اور روز پانی دینے کا وعدہ کیا۔ گاؤں کے بزرگوں نے کہا کہ ایسے کاموں سے "
    "ہوا "
    "صاف رہتی ہے اور گرمی کم ہوتی ہے۔ شام کو سب نے مل کر مٹھائی بانٹی اور اگلے مہینے پھر ملنے کا فیصلہ کیا۔"
)
THAI = (
    "เช้าวันนี้นักเรียนในโรงเรียนประจำหมู่บ้านช่วยกันปลูกต้นไม้ ครูสอนวิธีดูแลต้นกล้าอย่างถูกต้อง\n"
    "เด็กทุกคนตั้งชื่อให้ต้นไม้ของตัวเองและสัญญาว่าจะรดน้ำทุกวัน\n"
    "ผู้ใหญ่ในหมู่บ้านบอกว่างานแบบนี้ช่วยให้อากาศสะอาดและลดความร้อน\n"
    "ตอนเย็นทุกคนแบ่งขนมกันกินและนัดพบกันอีกครั้งในเดือนหน้า"
)
HINDI_SENTENCES = [s.rstrip("।") for s in HINDI.split("। ")]


@pytest.fixture(scope="module")
def th(registry):
    return lambda code: thresholds_for(registry.get(code))


@pytest.mark.parametrize(
    "code, text", [("hi", HINDI), ("bn", BENGALI), ("ur", URDU), ("th", THAI)], ids=["hi", "bn", "ur", "th"]
)
def test_a_clean_paragraph_passes_every_rule(th, registry, code, text):
    assert check_quality(text, registry.get(code).script, th(code)) is None


def test_thai_passes_without_sentence_punctuation_which_the_latin_defaults_would_reject(th):
    assert th("th").min_line_punct_ratio is None
    assert check_quality(THAI, "Thai", th("th")) is None
    assert check_quality(THAI, "Thai", QualityThresholds()) == "quality_line_punctuation"


def test_too_short_hindi(th):
    assert check_quality("नमस्ते दुनिया।", "Deva", th("hi")) == "quality_too_short"


def test_too_long_bengali(th):
    assert check_quality((BENGALI + "\n") * 30, "Beng", th("bn")) == "quality_too_long"


def test_urdu_cookie_login_and_copyright_lines_are_boilerplate(th):
    footer = "\nہم کوکیز استعمال کرتے ہیں۔\nلاگ ان\nرازداری کی پالیسی\nجملہ حقوق محفوظ ہیں۔"
    assert check_quality(URDU + footer, "Arab", th("ur")) == "quality_boilerplate_markers"


def test_lorem_ipsum_anywhere_is_boilerplate(th):
    assert (
        check_quality(HINDI + " Lorem ipsum dolor sit amet.", "Deva", th("hi"))
        == "quality_boilerplate_markers"
    )


def test_a_long_paragraph_that_mentions_a_password_is_content_not_boilerplate(th):
    text = (
        "Kata sandi yang baik sebaiknya panjang, minimal dua belas karakter, dan tidak memakai tanggal "
        "lahir. "
        "Jangan menggunakan kata sandi yang sama untuk semua akun, karena jika satu layanan bocor, penjahat "
        "akan "
        "mencoba kata sandi itu di layanan lain. Aktifkan juga verifikasi dua langkah di setiap layanan "
        "penting, "
        "supaya akun tetap aman meskipun kata sandi Anda diketahui orang lain."
    )
    assert check_quality(text, "Latn", th("id")) is None


def test_every_registry_language_has_notice_and_interface_markers(registry):
    assert set(BOILERPLATE_MARKERS) >= set(registry.codes) and set(INTERFACE_MARKERS) >= set(registry.codes)


def test_a_sentence_about_passwords_is_content_but_a_lone_password_label_is_interface():
    sentence = "আমরা অনেকেই সব অ্যাকাউন্টে একই পাসওয়ার্ড ব্যবহার করি, আর সেটি হয় নিজের নাম বা জন্মসাল।"
    assert not is_boilerplate_line(sentence)
    assert is_boilerplate_line("পাসওয়ার্ড")
    assert is_boilerplate_line("© 2024 সর্বস্বত্ব সংরক্ষিত। এই সাইটের কোনো লেখা অনুমতি ছাড়া ব্যবহার করা যাবে না।")
    assert not is_boilerplate_line(
        "Waktu membaca juga menjadi saat paling dekat di antara kami."
    )  # "baca juga"
    assert is_boilerplate_line("Tietosuojaseloste ja evästeet")


def test_hindi_bullet_list_lines(th):
    text = "\n".join(f"• {s}।" for s in HINDI_SENTENCES)
    assert check_quality(text, "Deva", th("hi")) == "quality_bullet_lines"


def test_bengali_lines_ending_in_ellipsis(th):
    sentences = BENGALI.split("। ")
    text = "\n".join(s + ("..." if i % 2 == 0 else "।") for i, s in enumerate(sentences))
    assert check_quality(text, "Beng", th("bn")) == "quality_ellipsis_lines"


def test_hindi_lines_without_a_danda_fail_line_punctuation(th):
    assert check_quality("\n".join(HINDI_SENTENCES), "Deva", th("hi")) == "quality_line_punctuation"


def test_the_danda_and_the_urdu_full_stop_count_as_terminal_punctuation():
    assert quality_signals(HINDI.replace("। ", "।\n"), "Deva")["line_punct_ratio"] == 1.0
    assert quality_signals(URDU.replace("۔ ", "۔\n"), "Arab")["line_punct_ratio"] == 1.0


def test_urdu_one_word_lines_are_short_lines(th):
    menu = "\n".join(w + "۔" for w in URDU.replace("۔", "").split(" ")[:50])
    assert len(menu) >= 200 and check_quality(menu, "Arab", th("ur")) == "quality_short_lines"


def test_short_lines_count_by_characters_so_a_list_beside_its_prose_passes(th):
    # Ten short lines of a shopping list hold fewer characters than the paragraph under them.
    items = "\n".join(w + "۔" for w in "سیب کیلا آم دودھ چینی آٹا نمک مرچ ادرک لہسن".split())
    assert check_quality(items + "\n" + URDU, "Arab", replace(th("ur"), max_lines_per_word=None)) is None


def test_hindi_repeated_lines(th):
    lines = [HINDI_SENTENCES[0] + "।"] * 3 + [s + "।" for s in HINDI_SENTENCES[1:]]
    assert check_quality("\n".join(lines), "Deva", th("hi")) == "quality_dup_line_fraction"


def test_a_clean_tamil_paragraph_of_22_words_fails_gophers_english_50_but_passes_tamils_calibrated_minimum(
    th, registry
):
    # 226 characters, 22 words: Gopher's English minimum (50) rejects clean Tamil that long; the calibrated
    # minimum is the word count of a 200-character text at the 1% quantile of Tamil's word density.
    assert check_quality(TAMIL_SHORT, "Taml", thresholds_for(registry.get("ta"), calibrated=False)) == (
        "quality_too_few_words")
    assert th("ta").min_words < 22
    assert check_quality(TAMIL_SHORT, "Taml", th("ta")) is None


def test_tamil_long_words_but_too_few_of_them(th):
    # Over 200 characters in fewer words than Tamil's calibrated minimum: words run together.
    first = TAMIL_SHORT.split(". ")[0] + ". "
    padded = first * 2 + "ஒவ்வொருமாணவரும்தன்கன்றுக்குஒருபெயர்வைத்துதினமும்தண்ணீர்ஊற்றுவதாகஉறுதியளித்தார்."
    assert len(padded) >= 200 and len(padded.split()) < th("ta").min_words
    assert check_quality(padded, "Taml", th("ta")) == "quality_too_few_words"


def test_too_many_words_with_a_lowered_bound(th):
    assert check_quality(HINDI, "Deva", replace(th("hi"), max_words=60)) == "quality_too_many_words"


def test_hindi_single_letters_have_a_mean_word_length_under_three(th):
    letters = "क ख ग घ च छ ज झ ट ठ ड ढ त थ द ध न प फ ब भ म य र ल व स ह".split()
    lines = [letters, letters[::-1], letters[::2] * 2, letters[1::2] * 2]
    text = "\n".join(" ".join(line) + "।" for line in lines)
    assert check_quality(text, "Deva", th("hi")) == "quality_mean_word_length"


def test_bengali_hashtags_exceed_the_symbol_ratio(th):
    tags = "#খবর #গ্রাম #স্কুল #গাছ #পরিবেশ #শিশু #শিক্ষা #বাংলা #সবুজ #ভবিষ্যৎ"
    assert check_quality(BENGALI + "\n" + tags, "Beng", th("bn")) == "quality_symbol_ratio"


def test_urdu_with_a_run_of_numbers_has_too_many_non_alphabetic_words(th):
    numbers = " ".join(str(1990 + i) for i in range(22))
    assert check_quality(URDU + "\nسال: " + numbers + "۔", "Arab", th("ur")) == "quality_non_alpha_words"


def test_three_words_a_line_is_too_many_lines_per_word(th):
    words = HINDI.replace("।", "").split()
    text = "\n".join(" ".join(words[i : i + 3]) + "।" for i in range(0, 66, 3))
    assert (
        check_quality(text, "Deva", replace(th("hi"), max_short_lines_ratio=None)) == "quality_lines_per_word"
    )


def test_a_phrase_repeated_on_distinct_lines_is_a_duplicated_ngram(th):
    counts = ["दस", "बीस", "तीस", "चालीस", "पचास", "साठ"]
    text = "\n".join(f"गाँव के स्कूल में बच्चों ने आज सुबह {n} पेड़ लगाए और पानी दिया।" for n in counts)
    assert check_quality(text, "Deva", th("hi")) == "quality_dup_ngram_fraction"


def test_a_rule_set_to_none_is_off():
    off = replace(QualityThresholds(), min_line_punct_ratio=None)
    assert check_quality("\n".join(HINDI_SENTENCES), "Deva", off) is None


def test_assess_quality_reports_the_word_count_it_measured(th):
    verdict = assess_quality(HINDI, "Deva", th("hi"))
    assert verdict.reason is None and verdict.words == 65
    assert assess_quality("छोटा।", "Deva", th("hi")).words is None  # rejected before words were counted


def test_registry_overrides_apply_after_the_script_defaults():
    thai = Language(code="th", name="Thai", script="Thai", quality={"min_words": 80, "max_chars": None})
    t = thresholds_for(thai)
    assert (t.min_words, t.max_chars, t.min_line_punct_ratio) == (80, None, None)


def test_ngram_overrides_from_yaml_lists_or_mappings_become_pairs():
    base = QualityThresholds()
    assert apply_overrides(base, {"max_dup_ngram_char_fraction": [[5, 0.2]]}).max_dup_ngram_char_fraction == (
        (5, 0.2),
    )
    assert apply_overrides(base, {"max_top_ngram_char_fraction": {2: 0.3}}).max_top_ngram_char_fraction == (
        (2, 0.3),
    )


def test_an_unknown_quality_setting_is_a_clear_error_naming_the_known_ones():
    lang = Language(code="fi", name="Finnish", script="Latn", quality={"min_wrds": 10})
    with pytest.raises(
        ValueError, match=r"language 'fi'.*unknown quality setting\(s\) \['min_wrds'\].*min_words"
    ):
        thresholds_for(lang)


def test_a_ratio_outside_zero_to_one_is_rejected():
    with pytest.raises(ValueError, match="max_short_lines_ratio must be within"):
        QualityThresholds(max_short_lines_ratio=1.5)


def test_quality_signals_measure_every_rule():
    signals = quality_signals(HINDI, "Deva")
    assert signals["chars"] == len(HINDI) and signals["words"] == 65 and signals["lines"] == 1
    assert {
        "dup_line_fraction",
        "top_2gram_char_fraction",
        "dup_10gram_char_fraction",
        "boilerplate_lines_ratio",
    } <= set(signals)


@pytest.mark.parametrize("code", ["fi", "id", "th", "tr", "vi", "bn", "hi", "sw", "ta", "ur"])
def test_on_the_sample_quality_keeps_clean_documents_and_rejects_boilerplate_and_fragments(
    code, registry, sample
):
    loaded = sample(code)
    if loaded is None:
        pytest.skip(f"no sample data for {code} yet")
    docs, labels, _ = loaded
    lang = registry.get(code)
    thresholds = thresholds_for(lang)
    reasons = [check_quality(doc.text, lang.script, thresholds) for doc in docs]
    clean = [reason for reason, label in zip(reasons, labels) if label == "clean"]
    assert sum(reason is None for reason in clean) / len(clean) >= 0.95, [r for r in clean if r]
    junk = [
        (label, reason) for reason, label in zip(reasons, labels) if label in {"boilerplate", "too_short"}
    ]
    assert junk and all(reason is not None for _, reason in junk), junk


# --- Many texts at once: the same verdicts ---------------------------------------------------------------

import random  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402

from xinst_assets.core.quality import assess_quality_batch, ngram_fractions  # noqa: E402
from xinst_assets.core.words import split_words  # noqa: E402


def _cascade(words: list[str]) -> tuple[dict[int, float], dict[int, float]]:
    """Gopher's n-gram fractions the plain way (a Counter per size), the reference for ngram_fractions."""
    top: dict[int, float] = {}
    dup: dict[int, float] = {}
    total = sum(map(len, words))
    for n in range(2, 11):
        grams = [tuple(words[p : p + n]) for p in range(len(words) - n + 1)]
        if not grams:
            break
        counts = Counter(grams)
        gram, count = counts.most_common(1)[0]
        if count < 2:
            break
        top[n] = sum(map(len, gram)) * count / total
        covered = [False] * len(words)
        seen: set = set()
        for p, g in enumerate(grams):
            if g in seen:
                covered[p : p + n] = [True] * n
            seen.add(g)
        dup[n] = sum(len(w) for w, c in zip(words, covered) if c) / total
    return top, dup


def _repetitive_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    vocabulary = HINDI.split() + THAI.split() + ["a", "bb", "ccc", "#", "...", "12", "x-y"]
    texts = []
    for _ in range(count):
        phrase = rng.choices(vocabulary, k=rng.randint(1, 12))
        body = phrase * rng.randint(1, 6) + rng.choices(vocabulary, k=rng.randint(0, 80))
        lines = [" ".join(body[i : i + rng.randint(1, 15)]) for i in range(0, len(body), 15)]
        texts.append(("\n" if rng.random() < 0.5 else " ").join(lines))
    return texts


def test_ngram_fractions_of_a_batch_equal_the_plain_cascade():
    texts = _repetitive_texts(5, 400) + [HINDI, BENGALI, THAI, "", "a", "a a a a"]
    words = [split_words(t, "Deva") for t in texts]
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(w, len(index)) for ws in words for w in ws], dtype=np.int64)
    lengths = np.array([len(w) for ws in words for w in ws], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum([len(ws) for ws in words])))
    top, dup = ngram_fractions(ids, lengths, offsets)
    for row, ws in enumerate(words):
        want_top, want_dup = _cascade(ws)
        assert [want_top.get(n, 0.0) for n in range(2, 11)] == top[row, 2:].tolist()
        assert [want_dup.get(n, 0.0) for n in range(2, 11)] == dup[row, 2:].tolist()


@pytest.mark.parametrize("code", ["hi", "bn", "ur", "th", "id", "tr"])
def test_the_batch_gives_every_text_the_verdict_of_assess_quality(th, registry, code, sample):
    found = sample(code)
    texts = [d.text for d in found[0]] if found else []
    rng = random.Random(len(code))
    base = texts + [HINDI, BENGALI, URDU, THAI, TAMIL_SHORT]
    texts += _repetitive_texts(len(code), 200)
    # Boilerplate and lorem ipsum in every position, lines cut short, symbols and digits added.
    for text in base:
        lines = text.splitlines() or [text]
        texts.append(text + "\nLorem IPSUM dolor" if rng.random() < 0.5 else text.replace(" ", " # ", 3))
        texts.append("\n".join(lines + ["© 2024", "Login", "Password", "Baca juga: x"][: rng.randint(1, 4)]))
        texts.append("\n".join(line[: rng.randint(0, 40)] for line in lines))
        texts.append(" ".join(["1", "2", "3"] * rng.randint(1, 40)) + " " + text[:300])
    thresholds = th(code)
    script = registry.get(code).script
    expected = [assess_quality(t, script, thresholds) for t in texts]
    assert assess_quality_batch(texts, script, thresholds) == expected
    assert {v.reason for v in expected} >= {None, "quality_boilerplate_markers"}


def test_a_forum_answer_whose_last_sentence_has_no_full_stop_is_still_prose(registry):
    text = ("Minulla oli sama ongelma viime talvena. Auto ei käynnistynyt pakkasella, vaikka akku oli kunnossa. "
            "Lopulta selvisi, että sytytystulpat olivat vanhat. Vaihdoin ne itse ja sen jälkeen kaikki on toiminut "
            "hyvin :)")
    assert check_quality(text, "Latn", thresholds_for(registry.get("fi"))) is None


def test_a_list_of_headline_links_is_not_prose_though_its_headlines_ask_questions(registry):
    headlines = ["Kultakilon hinta tänään – katso", "Ylioppilastulokset julki? – lue", "Sähkön hinta huomenna – katso",
                 "Päivän horoskooppi – lue", "Uusi työpaikka? – hae nyt", "Sääennuste: sataako huomenna? – katso",
                 "Viraalivideo – katso heti", "Bussilippujen hinnat nousevat? – lue lisää"]
    text = "Lue myös:\n" + "\n".join("» " + h for h in headlines)
    assert check_quality(text, "Latn", thresholds_for(registry.get("fi"))) == "quality_line_punctuation"
