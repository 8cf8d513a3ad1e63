import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from xinst_assets.core.export import EXPORT_SCHEMA, MARKER, export_dataset, to_export_frame

PROVENANCE = {
    "source_corpus": "sample web text (xinst_assets/data/sample)",
    "generator_model": "tiny-llama-test",
    "scorer": "tiny-llama-test",
    "thresholds": {"min_score": 2.5, "near_identical_cosine": 0.95},
    "run_id": "run-1234",
}
SW = [
    (
        "Write a news article about the floods in Kenya.",
        "Mvua kubwa imenyesha katika mji wa Nairobi usiku wa jana.",
    ),
    ("Summarize the report on rice prices.", "Bei ya mchele imepanda kwa asilimia kumi mwezi huu."),
    ("Explain how mobile banking works.", "Huduma za kifedha kwa simu zinamwezesha mtu kutuma pesa."),
]
TH = [
    ("Write a news article about a heatwave in Bangkok.", "อากาศร้อนจัดในกรุงเทพมหานครทำให้ประชาชนต้องอยู่ในบ้าน"),
    ("Create a recipe for pad thai.", "ผัดไทยเป็นอาหารไทยที่มีชื่อเสียง ใช้เส้นจันท์และกุ้งสด"),
]


def rows() -> pl.DataFrame:
    records = []
    for lang, pairs in (("sw", SW), ("th", TH)):
        for i, (instruction, response) in enumerate(pairs):
            records.append(
                {
                    "pair_id": f"{lang}-{i}",
                    "lang": lang,
                    "instruction": instruction,
                    "response": response,
                    "refined": i == 1,
                    "score": 2.5 + i / 10,
                    "label": 3,
                    "cluster": i,
                    "source_url": f"https://example.org/{lang}/{i}" if i else None,
                    "source_doc_id": f"doc-{lang}-{i}",
                }
            )
    return pl.DataFrame(records)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf-cache"


def test_the_export_loads_with_the_datasets_library_per_language_and_all(tmp_path, offline):
    from datasets import load_dataset

    out = tmp_path / "export"
    summary = export_dataset(rows(), out, PROVENANCE)
    assert summary.rows_by_lang == {"sw": 3, "th": 2} and summary.rows == 5

    sw = load_dataset(str(out), "sw", cache_dir=str(offline))["train"]
    assert sw.num_rows == 3
    assert sw.column_names == list(EXPORT_SCHEMA)
    assert sw[0]["id"] == "sw-0" and sw[0]["lang_name"] == "Swahili" and sw[0]["source_url"] is None
    assert sw[1]["refined"] is True and sw[1]["response"] == SW[1][1]

    everything = load_dataset(str(out), "all", cache_dir=str(offline))["train"]
    assert everything.num_rows == 5
    assert sorted(everything["lang"]) == ["sw", "sw", "sw", "th", "th"]
    assert load_dataset(str(out), "th", cache_dir=str(offline))["train"]["response"] == [r for _, r in TH]


def test_the_layout_has_parquet_jsonl_and_a_card_with_configs(tmp_path):
    out = tmp_path / "export"
    summary = export_dataset(rows(), out, PROVENANCE)
    assert summary.files == (
        "README.md",
        "data/sw/train-00000-of-00001.parquet",
        "data/th/train-00000-of-00001.parquet",
        "jsonl/sw/train-00000-of-00001.jsonl",
        "jsonl/th/train-00000-of-00001.jsonl",
    )
    lines = (out / "jsonl/th/train-00000-of-00001.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["response"] for line in lines] == [r for _, r in TH]  # UTF-8, not \u escapes
    assert "อากาศ" in lines[0]

    card = (out / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---")[1])
    assert [c["config_name"] for c in header["configs"]] == ["all", "sw", "th"]
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "data/*/train-*.parquet"}]
    assert header["language"] == ["en", "sw", "th"]
    assert "| Swahili | sw | 3 | 1 |" in card
    assert "run-1234" in card and "source corpus's licence" in card
    assert "{instruction} Answer in {lang_name}. \n\n### Response:" in card
    assert "Answer in {lang_name} and the style of an AI assistant." in card
    assert "write (1)" in card  # top verbs per language


def test_a_second_export_replaces_the_first_and_leaves_no_temporary_folders(tmp_path):
    out = tmp_path / "export"
    export_dataset(rows(), out, PROVENANCE)
    export_dataset(rows().filter(pl.col("lang") == "sw"), out, PROVENANCE)
    assert sorted(p.name for p in (out / "data").iterdir()) == ["sw"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert json.loads((out / MARKER).read_text())["rows_by_lang"] == {"sw": 3}


def test_a_failed_export_leaves_the_previous_one_untouched(tmp_path, monkeypatch):
    out = tmp_path / "export"
    export_dataset(rows(), out, PROVENANCE)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))

    def disk_full(self, path):  # a write error halfway through: Parquet files written, JSONL not
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_ndjson", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_dataset(rows().filter(pl.col("lang") == "sw"), out, PROVENANCE)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_a_folder_that_is_not_an_export_is_never_replaced(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an xinst export"):
        export_dataset(rows(), tmp_path / "notes", PROVENANCE)
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_large_languages_are_split_into_shards(tmp_path):
    summary = export_dataset(rows(), tmp_path / "export", PROVENANCE, rows_per_file=2)
    assert [f for f in summary.files if f.startswith("data/sw/")] == [
        "data/sw/train-00000-of-00002.parquet",
        "data/sw/train-00001-of-00002.parquet",
    ]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop("instruction"), "lack columns"),
        (lambda f: f.with_columns(pl.lit("sw-0").alias("pair_id")), "unique"),
        (lambda f: f.with_columns(pl.lit("good").alias("label")), "cannot be converted"),
        (lambda f: f.clear(), "no rows"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        export_dataset(change(rows()), tmp_path / "export", PROVENANCE)


def test_a_language_without_a_name_is_rejected_with_the_known_ones(tmp_path):
    with pytest.raises(KeyError, match="Unknown language code 'xx'"):
        export_dataset(rows().with_columns(pl.lit("xx").alias("lang")), tmp_path / "export", PROVENANCE)
    with pytest.raises(ValueError, match="no language name for"):
        to_export_frame(rows(), {"sw": "Swahili"})


def test_language_names_can_be_given_and_optional_columns_may_be_missing():
    frame = to_export_frame(rows().drop("source_url", "source_doc_id"), {"sw": "Kiswahili", "th": "Thai"})
    assert frame.schema == pl.Schema(EXPORT_SCHEMA)
    assert frame["lang_name"][0] == "Kiswahili" and frame["source_url"].null_count() == 5


def test_nothing_is_written_outside_the_export_folder(tmp_path):
    out = tmp_path / "nested" / "export"
    export_dataset(rows(), out, PROVENANCE)
    assert sorted(p.name for p in out.parent.iterdir()) == ["export"]
    assert Path(out / "README.md").exists()
