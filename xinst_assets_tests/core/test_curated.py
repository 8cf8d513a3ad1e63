from xinst_assets.core.curated import PARALLEL_PAIRS, SEED_PAIRS, curated_files, read_curated
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests.conftest import write_jsonl


def test_bad_curated_rows_get_reasons_and_good_rows_get_stable_ids(tmp_path):
    path = write_jsonl(tmp_path / "sw.jsonl", [
        {"instruction": "Write a short note.", "response": "Habari yako rafiki."},
        b"{not json",
        {"instruction": "", "response": "Jibu"},
        {"instruction": "Explain rain.", "response": 5},
        b"[]",
    ])
    good, bad = read_curated(SEED_PAIRS, path, "sw")
    again, _ = read_curated(SEED_PAIRS, path, "sw")
    assert [g["instruction"] for g in good] == ["Write a short note."]
    assert good[0]["id"] == again[0]["id"]
    assert [(b["line"], b["reason"]) for b in bad] == [
        (2, "malformed_json"), (3, "missing_field"), (4, "missing_field"), (5, "not_an_object")]
    assert "instruction" in bad[1]["detail"] and "response" in bad[2]["detail"]


def test_user_files_are_found_by_lang_globs_next_to_the_embedded_sample(tmp_path):
    write_jsonl(tmp_path / "extra" / "sw-parallel.jsonl", [{"en": "Hello.", "text": "Habari."}])
    files = curated_files(PARALLEL_PAIRS, "sw", SAMPLE_DIR, [str(tmp_path / "extra" / "{lang}-parallel.jsonl")])
    assert files[0] == SAMPLE_DIR / "parallel" / "sw.jsonl" and files[1].name == "sw-parallel.jsonl"
