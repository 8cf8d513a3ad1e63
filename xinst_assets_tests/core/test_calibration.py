"""Per-language calibration of the quality rules: the methods, the reference readers, the shipped values and
the registry entries that carry them."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from xinst_assets.calibration_files import PACKAGED_CALIBRATION_DIR, packaged_anchor, write_registry_file
from xinst_assets.cli import main as xinst
from xinst_assets.core.calibration import (
    CALIBRATED_SETTINGS,
    Anchor,
    Calibration,
    anchor_from_texts,
    calibrate,
    calibrate_language,
    measure_reference,
    read_reference,
    sample_reference,
    windows,
)
from xinst_assets.core.quality import QualityThresholds, check_quality, script_thresholds, thresholds_for
from xinst_assets.languages import Language, load_registry
from xinst_assets.settings import SAMPLE_DIR

# Two made-up "languages" with the same sentences: one with English-length words, one whose words are the
# same words glued in pairs (half as many, twice as long: an agglutinative language's shape).
SENTENCES = [
    "the farmers of the valley brought their rice to the market early on monday morning",
    "a new bridge over the river will open to cars and buses at the end of next month",
    "the school library now stays open in the evening so that pupils can read after class",
    "heavy rain in the hills raised the level of the lake by almost one metre in two days",
    "the town council asked every family to save water during the dry weeks of the summer",
    "local bakers sold more bread than usual because the big supermarket closed for repairs",
]


def _texts(glue: bool) -> list[str]:
    out = []
    for k in range(30):
        words = " ".join(SENTENCES[(k + j) % len(SENTENCES)] for j in range(4)).split()
        if glue:
            words = [a + b for a, b in zip(words[::2], words[1::2])]
        out.append(" ".join(words) + ".")
    return out


def test_windows_cut_reference_documents_at_whitespace_into_paragraph_sizes():
    text = " ".join(["word"] * 400)  # 1,999 characters
    pieces = windows(text)
    assert [len(p) for p in pieces][:4] == [204, 284, 364, 444]
    assert all(len(p) >= 200 for p in pieces) and " ".join(pieces) == text
    assert windows("short text") == ["short text"]


def test_a_language_with_half_as_many_twice_as_long_words_gets_a_lower_word_minimum_and_wider_lengths():
    english = measure_reference(_texts(glue=False), "Latn")
    glued = measure_reference(_texts(glue=True), "Latn")
    anchor = Anchor.from_stats(english, "made-up English")
    base = QualityThresholds()
    plain = calibrate("xx", english, anchor, base, "plain", today=dt.date(2026, 1, 1)).overrides()
    long_words = calibrate("yy", glued, anchor, base, "glued", today=dt.date(2026, 1, 1)).overrides()
    assert long_words["min_words"] < plain["min_words"] <= base.min_chars * english.quantile("words_per_char", 0.01)
    # Gopher's bounds follow the median word length (about twice as long when glued).
    assert plain["min_mean_word_length"] == pytest.approx(3.0, abs=0.01)
    assert long_words["min_mean_word_length"] > 1.8 * plain["min_mean_word_length"]
    assert long_words["max_mean_word_length"] > 1.8 * plain["max_mean_word_length"]
    # Per-word limits become per-character limits: fewer words per character, a higher limit per word.
    assert long_words["max_symbol_word_ratio"] > 1.8 * plain["max_symbol_word_ratio"]
    assert long_words["max_lines_per_word"] > 1.8 * plain["max_lines_per_word"]
    assert long_words["interface_line_words"] < plain["interface_line_words"]


def test_a_calibrated_bound_is_never_stricter_than_the_clean_quantile_it_guards():
    stats = measure_reference(_texts(glue=True), "Latn")
    # An anchor whose words are much longer than the reference's: the median ratio alone would put the
    # lower bound of the mean word length above most of the clean reference.
    anchor = Anchor(words_per_char=0.17, mean_word_length=2.0, reference="far off")
    calibration = calibrate("yy", stats, anchor, QualityThresholds(), "glued")
    value = next(v for v in calibration.values if v.setting == "min_mean_word_length")
    assert value.method == "guard" and value.value == pytest.approx(stats.quantile("mean_word_length", 0.01), abs=0.01)


def test_a_rule_that_is_off_for_the_script_stays_off():
    thai = Language("th", "Thai", "Thai")
    calibration = calibrate_language(thai, sample_reference(SAMPLE_DIR, "th"), packaged_anchor(), "sample")
    assert "min_line_punct_ratio" not in calibration.overrides()
    assert thresholds_for(Language("th", "Thai", "Thai", calibration=calibration)).min_line_punct_ratio is None


def test_every_value_records_its_method_statistic_and_quantile_and_the_reference_its_size_and_hash():
    lang = load_registry().get("ta")
    calibration = calibrate_language(lang, sample_reference(SAMPLE_DIR, "ta"), packaged_anchor(), "sample")
    stored = calibration.as_dict()
    assert set(stored["values"]) <= set(CALIBRATED_SETTINGS) and "min_words" in stored["values"]
    for spec in stored["values"].values():
        assert spec["method"] in {"density_floor", "median_ratio", "per_character", "guard", "default"}
        assert spec["statistic"]
    assert stored["values"]["min_words"]["quantile"] == 0.01
    assert stored["reference"]["windows"] > 50 and len(stored["reference"]["sha256"]) == 64
    assert stored["anchor"]["words_per_char"] > 0 and stored["xinst_version"] and stored["created"]
    again = Calibration.from_mapping("ta", json.loads(json.dumps(stored)))
    assert again.overrides() == calibration.overrides()


@pytest.mark.parametrize("code", ["fi", "id", "th", "tr", "vi", "bn", "hi", "sw", "ta", "ur"])
def test_the_shipped_calibration_is_what_the_packaged_reference_computes(code):
    registry = load_registry()
    lang = registry.get(code)
    computed = calibrate_language(lang, sample_reference(SAMPLE_DIR, code), packaged_anchor(), "sample")
    assert lang.calibration is not None
    assert lang.calibration.overrides() == computed.overrides()
    assert lang.calibration.reference["sha256"] == computed.reference["sha256"]


def test_the_shipped_anchor_is_what_the_packaged_english_reference_computes():
    anchor, _ = anchor_from_texts(sample_reference(SAMPLE_DIR, "en"), "en")
    shipped = packaged_anchor()
    assert round(anchor.words_per_char, 4) == round(shipped.words_per_char, 4)
    assert round(anchor.mean_word_length, 4) == round(shipped.mean_word_length, 4)


def test_the_word_minimum_of_every_language_passes_a_200_character_paragraph_of_its_reference():
    # The calibrated minimum is reached by a minimum-length text unless its words are in the sparsest 1%.
    registry = load_registry()
    for lang in registry:
        t = thresholds_for(lang)
        uncalibrated = thresholds_for(lang, calibrated=False)
        stats = measure_reference(sample_reference(SAMPLE_DIR, lang.code), lang.script)
        assert t.min_words <= 200 * stats.quantile("words_per_char", 0.01) + 1e-9, lang.code
        assert t.min_words != uncalibrated.min_words, lang.code


def test_reference_files_are_read_from_jsonl_parquet_and_blank_line_separated_text(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"body": "one"}\n\n{"body": "two"}\n', encoding="utf-8")
    pq.write_table(pa.table({"body": ["three", None]}), tmp_path / "b.parquet")
    (tmp_path / "c.txt").write_text("four\nstill four\n\n\nfive\n", encoding="utf-8")
    texts = list(read_reference([tmp_path / "a.jsonl", tmp_path / "b.parquet", tmp_path / "c.txt"], "body"))
    assert texts == ["one", "two", "three", "four\nstill four", "five"]


def test_a_reference_without_the_text_field_or_of_another_format_is_a_clear_error(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"content": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="no 'text' field"):
        list(read_reference([tmp_path / "a.jsonl"]))
    (tmp_path / "a.csv").write_text("x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=".jsonl, .jsonl.gz, .parquet or .txt"):
        list(read_reference([tmp_path / "a.csv"]))
    with pytest.raises(FileNotFoundError):
        list(read_reference([tmp_path / "missing.jsonl"]))
    with pytest.raises(ValueError, match="no text"):
        measure_reference(["", "  "], "Latn")


def test_the_registry_applies_the_calibration_after_the_script_defaults_and_manual_overrides_last(tmp_path):
    calibration = {"values": {"min_words": {"value": 21, "method": "density_floor"},
                              "max_mean_word_length": 14.5}}
    (tmp_path / "cal.yaml").write_text(yaml.safe_dump(calibration), encoding="utf-8")
    registry_file = tmp_path / "languages.yaml"
    registry_file.write_text(yaml.safe_dump({"languages": {
        "am": {"name": "Amharic", "script": "Ethi", "calibration": "cal.yaml"},
        "fi": {"name": "Finnish", "script": "Latn", "calibration": calibration, "quality": {"min_words": 30}},
    }}), encoding="utf-8")
    registry = load_registry(registry_file)
    amharic = thresholds_for(registry.get("am"))
    assert (amharic.min_words, amharic.max_mean_word_length) == (21, 14.5)
    assert thresholds_for(registry.get("fi")).min_words == 30  # the manual override wins
    assert thresholds_for(registry.get("am"), calibrated=False) == script_thresholds("Ethi")


def test_a_calibration_with_an_unknown_setting_or_a_missing_file_is_a_clear_error(tmp_path):
    registry_file = tmp_path / "languages.yaml"
    registry_file.write_text(yaml.safe_dump({"languages": {
        "am": {"name": "Amharic", "script": "Ethi", "calibration": {"values": {"min_wordz": 3}}}}}), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown quality setting 'min_wordz'"):
        load_registry(registry_file)
    registry_file.write_text(yaml.safe_dump({"languages": {
        "am": {"name": "Amharic", "script": "Ethi", "calibration": "nowhere.yaml"}}}), encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="calibration file of 'am' not found"):
        load_registry(registry_file)


def test_writing_a_registry_file_keeps_its_other_entries_and_the_language_loads_with_the_new_values(tmp_path):
    out = tmp_path / "mine.yaml"
    out.write_text(yaml.safe_dump({"languages": {"am": {"name": "Amharic", "script": "Ethi"}}, "only": ["am", "sw"]}),
                   encoding="utf-8")
    sw = load_registry().get("sw")
    calibration = calibrate_language(sw, sample_reference(SAMPLE_DIR, "sw")[:20], packaged_anchor(), "first 20")
    write_registry_file(out, sw, calibration)
    registry = load_registry(out)
    assert registry.codes == ["am", "sw"]
    assert registry.get("sw").calibration.overrides() == calibration.overrides()
    assert registry.get("sw").lid_confusable == sw.lid_confusable


def test_xinst_calibrate_writes_a_registry_file_from_the_users_reference(tmp_path, capsys):
    reference = tmp_path / "sw.jsonl"
    reference.write_text("\n".join(json.dumps({"text": t}) for t in sample_reference(SAMPLE_DIR, "sw")),
                         encoding="utf-8")
    out = tmp_path / "languages.yaml"
    assert xinst(["calibrate", "--language", "sw", "--reference", str(reference), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "min_words" in printed.out and "XINST_LANGUAGES_FILE" in printed.out
    assert "warning" in printed.err  # a few dozen documents: the quantiles are rough, and it says so
    entry = yaml.safe_load(out.read_text(encoding="utf-8"))["languages"]["sw"]
    assert entry["calibration"]["reference"]["name"] == "sw.jsonl"
    assert entry["calibration"]["values"]["min_words"]["method"] == "density_floor"
    shipped = load_registry().get("sw").calibration
    assert load_registry(out).get("sw").calibration.overrides() == shipped.overrides()


def test_xinst_calibrate_refuses_an_unknown_language_or_no_reference(tmp_path, capsys):
    assert xinst(["calibrate", "--language", "xx", "--packaged-reference", "--out", str(tmp_path / "a.yaml")]) == 2
    assert xinst(["calibrate", "--language", "sw", "--out", str(tmp_path / "a.yaml")]) == 2
    assert "--reference" in capsys.readouterr().err
    assert not (tmp_path / "a.yaml").exists()


def test_the_packaged_calibration_files_exist_for_every_packaged_language():
    registry = load_registry()
    assert sorted(p.stem for p in PACKAGED_CALIBRATION_DIR.glob("*.yaml")) == sorted([*registry.codes, "en"])


def test_calibration_keeps_a_clean_paragraph_that_gophers_english_minimum_drops():
    # A 230-character Finnish forum answer of 26 words (original text).
    text = ("Minulla oli sama ongelma viime talvena. Auto ei käynnistynyt pakkasella, vaikka akku oli kunnossa. "
            "Lopulta selvisi, että sytytystulpat olivat vanhat. Vaihdoin ne itse ja sen jälkeen kaikki on toiminut "
            "hyvin.")
    fi = load_registry().get("fi")
    assert check_quality(text, "Latn", thresholds_for(fi, calibrated=False)) == "quality_too_few_words"
    assert check_quality(text, "Latn", thresholds_for(fi)) is None
