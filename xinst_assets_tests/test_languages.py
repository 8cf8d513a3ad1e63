from pathlib import Path

import pytest

from xinst_assets.languages import UnknownLanguageError, load_registry
from xinst_assets.partitions import language_partitions

X_INSTRUCTION_LANGUAGES = ["fi", "id", "th", "tr", "vi", "bn", "hi", "sw", "ta", "ur"]


def test_the_packaged_registry_has_the_ten_x_instruction_languages_with_names_and_scripts():
    registry = load_registry()
    assert registry.codes == X_INSTRUCTION_LANGUAGES
    assert registry.get("sw").name == "Swahili" and registry.get("sw").script == "Latn"
    assert registry.get("ur").script == "Arab" and registry.get("th").script == "Thai"
    assert language_partitions(registry).get_partition_keys() == X_INSTRUCTION_LANGUAGES


def test_an_unknown_language_code_is_a_clear_error_that_lists_the_known_ones():
    with pytest.raises(UnknownLanguageError, match=r"Unknown language code 'xx'.*fi, id, th"):
        load_registry().get("xx")


def test_a_user_file_adds_and_overrides_languages_without_code_changes(tmp_path: Path):
    extra = tmp_path / "langs.yaml"
    extra.write_text(
        "languages:\n"
        "  am: {name: Amharic, script: Ethi, lid_threshold: 0.4}\n"
        "  sw: {name: Swahili, script: Latn, lid_threshold: 0.25}\n"
    )
    registry = load_registry(extra)
    assert registry.codes[-1] == "am" and registry.get("am").name == "Amharic"
    assert registry.get("sw").lid_threshold == 0.25
    assert len(registry) == 11


def test_a_user_file_can_narrow_the_registry_to_some_languages(tmp_path: Path):
    extra = tmp_path / "langs.yaml"
    extra.write_text("only: [sw, fi]\nlanguages: {}\n")
    assert load_registry(extra).codes == ["sw", "fi"]


@pytest.mark.parametrize(
    "entry, message",
    [
        ("XX: {name: Bad, script: Latn}", "must be 2-3 lowercase letters"),
        ("am: {script: Ethi}", "needs 'name'"),
        ("am: {name: Amharic, script: ethiopic}", "ISO 15924"),
        ("am: {name: Amharic, script: Ethi, lid_threshold: 1.5}", "within \\[0, 1\\]"),
        ("am: {name: Amharic, script: Ethi, colour: blue}", "unknown keys \\['colour'\\]"),
    ],
)
def test_bad_registry_entries_fail_with_a_message_naming_the_file_and_problem(tmp_path, entry, message):
    extra = tmp_path / "langs.yaml"
    extra.write_text(f"languages:\n  {entry}\n")
    with pytest.raises(ValueError, match=message):
        load_registry(extra)


def test_a_missing_registry_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Language registry file not found"):
        load_registry(tmp_path / "nope.yaml")


def test_english_name_and_label_codes_cover_iso_639_3_and_glotlid_styles():
    sw = load_registry().get("sw")
    assert {"sw", "swa", "swh", "swh_Latn", "swa_Latn", "sw_Latn"} <= sw.label_codes
