"""The accuracy evaluation: loading a labelled set, its end-to-end figures, and the targets on the project's
own labelled set (xinst_assets_tests/data/filter_eval)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xinst_assets.core.filter_eval import evaluate, load_eval_set, targets_missed

EVAL_SET = Path(__file__).resolve().parents[1] / "data" / "filter_eval"
FINNISH = ("Kaupunginkirjasto pidentää aukioloaikojaan syyskuun alusta. Jatkossa pääkirjasto on avoinna arkisin "
           "kello 8–20 ja lauantaisin kello 10–16. Muutoksen taustalla on asiakaskysely, jossa moni toivoi "
           "mahdollisuutta asioida kirjastossa myös työpäivän jälkeen.")
ESTONIAN = ("Linnavalitsus otsustas eelmisel nädalal, et bussiliinid number 5 ja 12 hakkavad järgmisest kuust "
            "sõitma sagedamini. Tipptunnil väljub buss iga kümne minuti järel. Elanikud on juba pikka aega "
            "kurtnud, et hommikused bussid on ülerahvastatud ja sageli hilinevad.")
MENU = "Etusivu\nUutiset\nUrheilu\nViihde\nSää\nKirjaudu\nRekisteröidy\n" * 6


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _tiny_set(root: Path) -> Path:
    _write(root / "lid" / "fi.jsonl", [
        {"id": "fi-1", "lang": "fi", "kind": "clean", "text": FINNISH},
        {"id": "fi-2", "lang": "fi", "kind": "clean", "text": FINNISH.replace("kirjasto", "uimahalli")[:150]},
        {"id": "fi-3", "lang": "fi", "kind": "short", "text": "Kirjasto avataan kello kahdeksan"},
        {"id": "fi-4", "lang": "fi", "kind": "boilerplate", "text": MENU},
    ])
    _write(root / "distractors" / "et.jsonl", [{"id": "et-1", "lang": "et", "kind": "clean", "text": ESTONIAN}])
    _write(root / "quality" / "fi.jsonl", [
        {"id": "fi-q-1", "lang": "fi", "quality": "good", "defect": None, "text": FINNISH},
        {"id": "fi-q-2", "lang": "fi", "quality": "bad", "defect": "menu", "text": MENU},
    ])
    return root


def test_a_tiny_set_gives_recall_precision_boilerplate_and_quality_figures(tmp_path, registry, identifier):
    eval_set = load_eval_set(_tiny_set(tmp_path))
    assert eval_set.lid_languages == ["fi"] and eval_set.distractor_languages == ["et"]
    report = evaluate(eval_set, registry, identifier)
    fi = report.partitions["fi"]
    # The 150-character paragraph is under the length floor: a missed clean document, with its reason.
    assert (fi.clean_total, fi.clean_kept, fi.kept_total, fi.kept_correct) == (2, 1, 1, 1)
    assert fi.missed == (("fi-2", "quality_too_short"),) and fi.recall == 0.5 and fi.precision == 1.0
    assert (fi.boilerplate_total, fi.boilerplate_dropped) == (1, 1)
    assert report.quality["fi"].good_kept == 1 and report.quality["fi"].bad_dropped == 1
    assert report.short["fi"].total == 1
    assert report.leaks == {}
    assert targets_missed(report) == ["fi: clean recall 0.500 < 0.95"]
    assert "| fi | 1.000 | 0.500 (1/2)" in report.markdown()


def test_a_duplicate_id_or_an_unknown_kind_is_a_clear_error_naming_the_line(tmp_path):
    _write(tmp_path / "lid" / "fi.jsonl", [{"id": "a", "lang": "fi", "kind": "clean", "text": "x"},
                                           {"id": "a", "lang": "fi", "kind": "clean", "text": "y"}])
    with pytest.raises(ValueError, match="fi.jsonl:2: id 'a' already used at fi.jsonl:1"):
        load_eval_set(tmp_path)
    _write(tmp_path / "lid" / "fi.jsonl", [{"id": "a", "lang": "fi", "kind": "junk", "text": "x"}])
    with pytest.raises(ValueError, match="kind 'junk'"):
        load_eval_set(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_eval_set(tmp_path / "missing")


@pytest.mark.slow
def test_the_language_filtering_targets_hold_on_the_projects_labelled_set(registry, identifier):
    """Per language: kept-set precision >= 0.98 and clean recall >= 0.95 end to end (every partition screens
    every document, foreign ones included); mixed posts kept >= 0.8; the quality rules keep >= 0.9 of the
    well-formed documents and drop >= 0.95 of the bad ones."""
    eval_set = load_eval_set(EVAL_SET)
    assert set(eval_set.lid_languages) == set(registry.codes)
    report = evaluate(eval_set, registry, identifier)
    assert targets_missed(report) == [], report.markdown() + "\n" + report.errors()
    totals = report.totals()
    assert totals["mixed_kept"] >= 0.8 and totals["good_kept"] >= 0.9 and totals["bad_dropped"] >= 0.95
    for code, partition in report.partitions.items():
        assert partition.mixed_foreign_dropped == partition.mixed_foreign_total, code
        assert partition.boilerplate_dropped == partition.boilerplate_total, code
