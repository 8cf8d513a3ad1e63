"""Calibration files: the packaged calibrations (``config/calibration/``) and the registry files that
``xinst calibrate`` writes (core logic: :mod:`xinst_assets.core.calibration`).

The packaged calibrations are computed from the packaged reference (:func:`~xinst_assets.core.calibration.
sample_reference`: the embedded sample's clean documents, seed-pair responses and parallel sentences; English:
``data/reference/en.jsonl`` plus the English sides of the parallel files) by :func:`write_packaged`, which
``python -m xinst_assets.calibration_files`` runs; a test checks that the shipped files are what it computes.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from xinst_assets.core.calibration import (
    DEFAULT_SHARE,
    Anchor,
    Calibration,
    anchor_from_texts,
    calibrate_language,
    load_anchor,
    sample_reference,
)
from xinst_assets.languages import PACKAGED_REGISTRY, Language, LanguageRegistry, load_registry
from xinst_assets.settings import SAMPLE_DIR

PACKAGED_CALIBRATION_DIR = PACKAGED_REGISTRY.parent / "calibration"
PACKAGED_ANCHOR = PACKAGED_CALIBRATION_DIR / "en.yaml"
PACKAGED_REFERENCE_NAME = "xinst packaged reference (data/sample: clean raw documents, seed-pair responses, parallel sentences in groups of 4)"
PACKAGED_ANCHOR_NAME = "xinst packaged English reference (data/reference/en.jsonl and the English sides of data/sample/parallel)"
HEADER = ("# Calibrated quality settings of one language, with the provenance of each value.\n"
          "# Written by `{command}`; see xinst_assets/core/calibration.py for the methods.\n")


def packaged_anchor() -> Anchor:
    """English's anchor shipped with the package."""
    return load_anchor(PACKAGED_ANCHOR)


def _dump(data: Mapping[str, Any], header: str) -> str:
    return header + yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=120)


def write_packaged(codes: Iterable[str] | None = None, today: dt.date | None = None) -> list[Path]:
    """Compute the anchor and the calibration of ``codes`` (default: every packaged language) from the
    packaged reference and write them under ``config/calibration/``; return the files written."""
    registry = load_registry(None) if codes is None else None
    languages = list(registry) if registry is not None else [load_registry(None).get(c) for c in codes]
    anchor, stored = anchor_from_texts(sample_reference(SAMPLE_DIR, "en"), PACKAGED_ANCHOR_NAME)
    PACKAGED_CALIBRATION_DIR.mkdir(parents=True, exist_ok=True)
    written = [PACKAGED_ANCHOR]
    PACKAGED_ANCHOR.write_text(_dump({"anchor": stored}, "# English anchor of the calibration methods (medians "
                               "with the units the rules count in).\n# Written by `python -m xinst_assets."
                               "calibration_files`.\n"), encoding="utf-8")
    for lang in languages:
        calibration = calibrate_language(lang, sample_reference(SAMPLE_DIR, lang.code), anchor,
                                         PACKAGED_REFERENCE_NAME, today=today)
        path = PACKAGED_CALIBRATION_DIR / f"{lang.code}.yaml"
        path.write_text(_dump(calibration.as_dict(), HEADER.format(command="python -m xinst_assets.calibration_files")),
                        encoding="utf-8")
        written.append(path)
    return written


def registry_entry(lang: Language, calibration: Calibration | None) -> dict[str, Any]:
    """The registry entry of ``lang`` (as YAML data) with ``calibration`` inline."""
    entry: dict[str, Any] = {"name": lang.name, "script": lang.script}
    if lang.iso639_3:
        entry["iso639_3"] = lang.iso639_3
    entry["lid_threshold"] = lang.lid_threshold
    if lang.lid_labels:
        entry["lid_labels"] = list(lang.lid_labels)
    if lang.lid_confusable:
        entry["lid_confusable"] = list(lang.lid_confusable)
    if lang.quality:
        entry["quality"] = dict(lang.quality)
    if calibration is not None:
        entry["calibration"] = calibration.as_dict()
    return entry


def write_registry_file(path: Path, lang: Language, calibration: Calibration) -> None:
    """Write ``lang``'s entry with ``calibration`` into the registry file at ``path`` (created, or updated in
    place: its other entries and keys stay), for ``XINST_LANGUAGES_FILE``."""
    data: dict[str, Any] = {}
    if path.is_file():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict) or not isinstance(data.get("languages", {}), dict):
            raise ValueError(f"{path}: not a registry file (expected a top-level 'languages:' mapping)")
    languages = dict(data.get("languages") or {})
    languages[lang.code] = registry_entry(lang, calibration)
    data["languages"] = languages
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump(data, "# xinst language registry entries (XINST_LANGUAGES_FILE); calibrations written by "
                          "`xinst calibrate`.\n"), encoding="utf-8")


def calibration_table(calibration: Calibration, before: Mapping[str, Any]) -> str:
    """A plain-text table of the calibrated values against the ones they replace."""
    lines = [f"{'setting':<28} {'before':>8} {'after':>8}  method         reference value"]
    for v in calibration.values:
        lines.append(f"{v.setting:<28} {str(before.get(v.setting)):>8} {str(v.value):>8}  {v.method:<14} "
                     f"{'' if v.measured is None else v.measured}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Regenerate the packaged calibrations (``python -m xinst_assets.calibration_files [codes...]``)."""
    codes = (argv if argv is not None else sys.argv[1:]) or None
    for path in write_packaged(codes):
        print(f"wrote {path.relative_to(PACKAGED_REGISTRY.parent.parent.parent)}")
    return 0


__all__ = ["PACKAGED_ANCHOR", "PACKAGED_CALIBRATION_DIR", "calibration_table", "packaged_anchor",
           "registry_entry", "write_packaged", "write_registry_file", "DEFAULT_SHARE", "LanguageRegistry"]

if __name__ == "__main__":
    sys.exit(main())
