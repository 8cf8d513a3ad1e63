"""Per-language calibration of the length- and word-based quality rules from reference text of the language.

Gopher's rules were set on English: at least 50 words, a mean word length of 3 to 10 characters, at most 0.1
hash signs or ellipses per word. Applied to every language they remove very different shares of clean text:
the same 300-character paragraph has about 55 words in English and about 30 in Tamil, and a Finnish or
Turkish word is half again as long as an English one. FineWeb-2 calibrates each rule per language on
reference text (Wikipedia and curated corpora), so that a rule removes about the same share of *clean* text
in every language. This module does the same from any reference text the user points at (a shard of the
language's Wikipedia, their own curated text, or the packaged reference), and writes the values as data
(:class:`Calibration`, stored in the registry with its provenance).

Units. Every statistic is measured with the units the rules count in (:func:`~xinst_assets.core.words.split_words`):
letter/mark/digit runs for the spaced scripts (an abugida's vowel signs and viramas stay inside their word;
an agglutinative language simply has fewer, longer words), orthographic syllables for Thai and Lao. The
calibration makes those units comparable across languages, instead of assuming one unit fits all.

Reference units. A rule bites at paragraph scale (the filter keeps texts from 200 characters up), where
statistics vary most, so word statistics are measured on *windows*: each reference document cut at
whitespace into consecutive pieces of 200 to 520 characters (paragraph sizes), and line statistics on whole
documents (a window has no line structure to speak of).

Methods, one per rule (``method`` in the provenance):

* ``density_floor`` (``min_words``): a text of the minimum length ``min_chars`` passes unless its words are
  sparser than the ``share`` quantile of the language's windows: ``floor(min_chars x Q_share(words/char))``.
  Longer texts pass further above it, so the rule removes at most ``share`` of clean text in any language.
* ``median_ratio`` (mean word length bounds): Gopher's English bounds scaled by the ratio of the language's
  median mean word length to English's (FineWeb-2's median-ratio method), both measured here with the same
  units; English's median is the anchor shipped with the packaged calibrations.
* ``per_character`` (hash signs/ellipses per word, line breaks per word, words of an interface line): a
  per-word limit set on English turned into the same limit per character (``x words_per_char(en) /
  words_per_char(L)``): the same symbol density per character of text is junk in every language.
* ``guard`` (every calibrated bound, and the line-punctuation, short-line and non-alphabetic-token ratios):
  the bound is never stricter than the ``share`` quantile of the language's clean reference (a lower bound is
  lowered to ``Q_share``, an upper bound raised to ``Q_(1-share)``), and the three ratios are never stricter
  than their English defaults: a rule never removes more than ``share`` of clean reference text.

What is not calibrated, on purpose: ``min_chars``/``max_chars`` (the response lengths the project wants, in
characters: a 200-character paragraph must pass in every language), ``max_words`` (never binding under
``max_chars``), and the repetition fractions (shares of word characters, comparable across languages).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from xinst_assets.core.quality import QualityThresholds, quality_signals
from xinst_assets.core.words import split_words

CALIBRATION_VERSION = 1
# The share of clean reference text each calibrated rule may remove (per rule; they overlap, so the whole set
# removes little more than the largest of them).
DEFAULT_SHARE = 0.01
# Window sizes cycled through when cutting reference documents (characters): paragraph sizes, from the
# filter's minimum length up.
WINDOW_TARGETS = (200, 280, 360, 440, 520)
# The Gopher/FineWeb English values the methods transfer to other languages.
ENGLISH_RULES = QualityThresholds()
# Settings this module computes, in the order they are written.
CALIBRATED_SETTINGS = (
    "min_words",
    "min_mean_word_length",
    "max_mean_word_length",
    "max_symbol_word_ratio",
    "max_lines_per_word",
    "interface_line_words",
    "max_non_alpha_words_ratio",
    "min_line_punct_ratio",
    "max_short_lines_ratio",
)


@dataclass(frozen=True)
class CalibratedValue:
    """One calibrated setting of :class:`QualityThresholds` and how it was obtained."""

    setting: str
    value: float | int | None
    method: str  # density_floor | median_ratio | per_character | guard | default
    statistic: str  # what was measured, on which units
    quantile: float | None  # the reference quantile the value rests on (None: a median or ratio)
    measured: float | None  # the reference value the method used (the quantile, median or ratio)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = {"value": self.value, "method": self.method, "statistic": self.statistic,
               "quantile": self.quantile, "measured": self.measured}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class ReferenceStats:
    """Distributions measured on a language's reference text (per window and per document)."""

    script: str
    documents: int
    windows: int
    chars: int
    sha256: str  # of the reference texts, in order: identifies what was measured
    words_per_char: np.ndarray  # per window
    mean_word_length: np.ndarray  # per window
    symbol_word_ratio: np.ndarray  # per window
    non_alpha_words_ratio: np.ndarray  # per window
    line_punct_ratio: np.ndarray  # per multi-line document
    short_lines_ratio: np.ndarray  # per multi-line document
    lines_per_word: np.ndarray  # per document

    def median(self, name: str) -> float:
        return float(np.median(getattr(self, name)))

    def quantile(self, name: str, q: float) -> float:
        values = getattr(self, name)
        return float(np.quantile(values, q)) if len(values) else float("nan")


@dataclass(frozen=True)
class Anchor:
    """English's medians, measured on English reference text with the same units (the ``median_ratio`` and
    ``per_character`` methods scale English's rules by them)."""

    words_per_char: float
    mean_word_length: float
    reference: str

    def as_dict(self) -> dict[str, Any]:
        return {"words_per_char": round(self.words_per_char, 5),
                "mean_word_length": round(self.mean_word_length, 4), "reference": self.reference}

    @classmethod
    def from_stats(cls, stats: ReferenceStats, reference: str) -> "Anchor":
        return cls(stats.median("words_per_char"), stats.median("mean_word_length"), reference)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "Anchor":
        return cls(float(data["words_per_char"]), float(data["mean_word_length"]), str(data.get("reference", "")))


@dataclass(frozen=True)
class Calibration:
    """A language's calibrated quality settings, with where each value comes from."""

    language: str
    values: tuple[CalibratedValue, ...]
    reference: Mapping[str, Any]  # name, documents, windows, characters, sha256
    anchor: Mapping[str, Any]
    share: float
    created: str  # ISO date
    xinst_version: str
    calibration_version: int = CALIBRATION_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def overrides(self) -> dict[str, Any]:
        """The settings to apply over the script defaults (``QualityThresholds`` field -> value)."""
        return {v.setting: v.value for v in self.values}

    def as_dict(self) -> dict[str, Any]:
        """The YAML/JSON form stored in the registry (``calibration:`` of a language)."""
        return {
            "calibration_version": self.calibration_version,
            "created": self.created,
            "xinst_version": self.xinst_version,
            "share": self.share,
            "reference": dict(self.reference),
            "anchor": dict(self.anchor),
            "values": {v.setting: v.as_dict() for v in self.values},
        }

    @classmethod
    def from_mapping(cls, language: str, data: Mapping[str, Any], source: str = "calibration") -> "Calibration":
        """Parse the stored form; unknown settings are a clear error."""
        if not isinstance(data, Mapping) or not isinstance(data.get("values"), Mapping):
            raise ValueError(f"{source}: calibration of {language!r} needs a 'values:' mapping")
        known = {f for f in QualityThresholds.__dataclass_fields__}
        values = []
        for setting, spec in data["values"].items():
            if setting not in known:
                raise ValueError(f"{source}: calibration of {language!r} sets unknown quality setting {setting!r}")
            spec = spec if isinstance(spec, Mapping) else {"value": spec, "method": "given"}
            values.append(CalibratedValue(
                setting, spec.get("value"), str(spec.get("method", "given")), str(spec.get("statistic", "")),
                spec.get("quantile"), spec.get("measured"), str(spec.get("note", ""))))
        return cls(
            language=language, values=tuple(values), reference=dict(data.get("reference") or {}),
            anchor=dict(data.get("anchor") or {}), share=float(data.get("share", DEFAULT_SHARE)),
            created=str(data.get("created", "")), xinst_version=str(data.get("xinst_version", "")),
            calibration_version=int(data.get("calibration_version", CALIBRATION_VERSION)),
        )


# --- Reference text ----------------------------------------------------------------------------------------


def read_reference(paths: Sequence[str | Path], text_field: str = "text") -> Iterator[str]:
    """The documents of reference files: ``.jsonl`` (the ``text_field`` of each object), ``.parquet`` (that
    column), ``.txt`` (documents separated by blank lines). A missing file or field is a clear error."""
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise FileNotFoundError(f"reference file not found: {path}")
        suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".jsonl.gz") else path.suffix
        if suffix in (".jsonl", ".json", ".jsonl.gz"):
            import gzip

            opener = gzip.open if suffix.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    if text_field not in row:
                        raise ValueError(f"{path}:{number}: no {text_field!r} field (choose it with --text-field)")
                    if row[text_field]:
                        yield str(row[text_field])
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            file = pq.ParquetFile(path)
            if text_field not in file.schema_arrow.names:
                raise ValueError(f"{path}: no {text_field!r} column (choose it with --text-field)")
            for batch in file.iter_batches(columns=[text_field], batch_size=1_000):
                yield from (t for t in batch.column(0).to_pylist() if t)
        elif suffix == ".txt":
            block: list[str] = []
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    block.append(line)
                elif block:
                    yield "\n".join(block)
                    block = []
            if block:
                yield "\n".join(block)
        else:
            raise ValueError(f"{path}: reference files are .jsonl, .jsonl.gz, .parquet or .txt")


def windows(text: str, targets: Sequence[int] = WINDOW_TARGETS, start: int = 0) -> list[str]:
    """``text`` cut at whitespace into consecutive pieces of at least ``targets[k]`` characters (cycling
    through the targets from ``start``); a last piece shorter than the smallest target joins the one before.
    A text without whitespace (or shorter than the smallest target) is one piece."""
    tokens = text.split()
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    k = start
    for token in tokens:
        current.append(token)
        size += len(token) + (1 if size else 0)
        if size >= targets[k % len(targets)]:
            pieces.append(" ".join(current))
            current, size = [], 0
            k += 1
    if current:
        tail = " ".join(current)
        if pieces and len(tail) < min(targets):
            pieces[-1] = pieces[-1] + " " + tail
        else:
            pieces.append(tail)
    return pieces


def measure_reference(texts: Iterable[str], script: str) -> ReferenceStats:
    """Measure the distributions the methods need over reference ``texts`` of a language in ``script``."""
    docs = [t for t in (str(x).strip() for x in texts) if t]
    if not docs:
        raise ValueError("the reference holds no text")
    digest = hashlib.sha256()
    per_window: dict[str, list[float]] = {k: [] for k in ("wpc", "mwl", "sym", "nonalpha")}
    punct: list[float] = []
    short: list[float] = []
    lpw: list[float] = []
    chars = 0
    k = 0
    for doc in docs:
        digest.update(doc.encode("utf-8") + b"\0")
        chars += len(doc)
        signals = quality_signals(doc, script)
        lpw.append(float(signals["lines_per_word"]))
        if signals["lines"] >= 2:  # line structure only means something with several lines
            punct.append(float(signals["line_punct_ratio"]))
            short.append(float(signals["short_lines_ratio"]))
        for piece in windows(" ".join(doc.split()), start=k):
            k += 1
            words = split_words(piece, script)
            if not words:
                continue
            s = quality_signals(piece, script)
            per_window["wpc"].append(len(words) / len(piece))
            per_window["mwl"].append(float(s["mean_word_length"]))
            per_window["sym"].append(float(s["symbol_word_ratio"]))
            per_window["nonalpha"].append(float(s["non_alpha_words_ratio"]))
    if not per_window["wpc"]:
        raise ValueError("the reference holds no words")
    return ReferenceStats(
        script=script, documents=len(docs), windows=len(per_window["wpc"]), chars=chars,
        sha256=digest.hexdigest(),
        words_per_char=np.array(per_window["wpc"]), mean_word_length=np.array(per_window["mwl"]),
        symbol_word_ratio=np.array(per_window["sym"]), non_alpha_words_ratio=np.array(per_window["nonalpha"]),
        line_punct_ratio=np.array(punct), short_lines_ratio=np.array(short), lines_per_word=np.array(lpw),
    )


def sample_reference(sample_dir: Path, code: str, parallel_group: int = 4) -> list[str]:
    """The packaged calibration reference of ``code`` from the embedded sample (all of it original text): the
    raw documents labelled ``clean``, the responses of the seed pairs, and the sentences of the parallel file
    in consecutive groups of ``parallel_group`` (everyday sentences, a genre the documents lack). For English
    (``en``), the ``en`` sides of every parallel file (each sentence once) plus ``reference/en.jsonl``."""
    texts: list[str] = []
    if code == "en":
        seen: dict[str, None] = {}
        for path in sorted((sample_dir / "parallel").glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    seen.setdefault(json.loads(line)["en"], None)
        sentences = list(seen)
        texts += [" ".join(sentences[i : i + parallel_group]) for i in range(0, len(sentences), parallel_group)]
        texts += list(read_reference([sample_dir.parent / "reference" / "en.jsonl"]))
        return texts
    labels = [json.loads(x) for x in (sample_dir / "labels" / f"{code}.jsonl").read_text(encoding="utf-8").splitlines()
              if x.strip()]
    docs = [json.loads(x) for path in sorted((sample_dir / "raw" / code).glob("*.jsonl"))
            for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    if len(labels) != len(docs):
        raise ValueError(f"sample of {code!r}: {len(docs)} raw documents but {len(labels)} labels")
    texts += [d["text"] for d, label in zip(docs, labels) if label["label"] == "clean"]
    seeds = sample_dir / "seed_pairs" / f"{code}.jsonl"
    if seeds.is_file():
        texts += [json.loads(x)["response"] for x in seeds.read_text(encoding="utf-8").splitlines() if x.strip()]
    parallel = sample_dir / "parallel" / f"{code}.jsonl"
    if parallel.is_file():
        sentences = [json.loads(x)["text"] for x in parallel.read_text(encoding="utf-8").splitlines() if x.strip()]
        texts += [" ".join(sentences[i : i + parallel_group]) for i in range(0, len(sentences), parallel_group)]
    return texts


# --- The methods -------------------------------------------------------------------------------------------


def _r(x: float, digits: int = 4) -> float:
    return round(float(x), digits)


def calibrate(
    language: str,
    stats: ReferenceStats,
    anchor: Anchor,
    base: QualityThresholds,
    reference_name: str,
    share: float = DEFAULT_SHARE,
    today: _dt.date | None = None,
) -> Calibration:
    """The calibrated settings of ``language`` from its reference ``stats``.

    ``base`` is the thresholds the calibration replaces (the defaults after the script's adjustments): its
    values are the "English" rules for the ratio rules and the starting point of the guards; a rule that is
    off (``None``) in ``base`` stays off.
    """
    if not 0.0 < share < 0.5:
        raise ValueError(f"share must be within (0, 0.5), got {share}")
    en = ENGLISH_RULES
    values: list[CalibratedValue] = []
    lo, hi = share, 1.0 - share
    wpc_ratio = anchor.words_per_char / stats.median("words_per_char")  # > 1: fewer units per char than English

    # min_words: the words of a minimum-length text whose density is at the share quantile.
    if base.min_words is not None and base.min_chars is not None:
        q = stats.quantile("words_per_char", lo)
        values.append(CalibratedValue(
            "min_words", max(1, int(math.floor(base.min_chars * q))), "density_floor",
            f"words per character over {stats.windows} windows of 200-520 characters", lo, _r(q, 5),
            f"floor(min_chars {base.min_chars} x quantile)"))

    # Mean word length: Gopher's English bounds scaled by the median ratio, guarded by the quantiles.
    median = stats.median("mean_word_length")
    ratio = median / anchor.mean_word_length
    for setting, english, q, widen in (
        ("min_mean_word_length", en.min_mean_word_length, lo, min),
        ("max_mean_word_length", en.max_mean_word_length, hi, max),
    ):
        if getattr(base, setting) is None or english is None:
            continue
        scaled = english * ratio
        guard = stats.quantile("mean_word_length", q)
        value = widen(scaled, guard)
        values.append(CalibratedValue(
            setting, _r(value, 2), "median_ratio" if value == scaled else "guard",
            f"mean word length over {stats.windows} windows (median {median:.3f}; English {anchor.mean_word_length:.3f})",
            q, _r(ratio if value == scaled else guard),
            f"Gopher's English {english} x median ratio {ratio:.3f} = {scaled:.2f}; clean-text quantile {guard:.2f}"))

    # Per-word limits as per-character limits.
    for setting, english, stat in (
        ("max_symbol_word_ratio", en.max_symbol_word_ratio, "symbol_word_ratio"),
        ("max_lines_per_word", en.max_lines_per_word, "lines_per_word"),
    ):
        if getattr(base, setting) is None or english is None:
            continue
        scaled = english * wpc_ratio
        guard = stats.quantile(stat, hi)
        value = max(scaled, guard)
        values.append(CalibratedValue(
            setting, _r(value), "per_character" if value == scaled else "guard",
            f"words per character (median {stats.median('words_per_char'):.4f}; English "
            f"{anchor.words_per_char:.4f}); {stat} quantile {guard:.4f}",
            None if value == scaled else hi, _r(wpc_ratio if value == scaled else guard),
            f"English {english} x {wpc_ratio:.3f}"))
    if base.max_boilerplate_lines_ratio is not None:
        scaled = en.interface_line_words * wpc_ratio ** -1
        value = max(3, int(round(scaled)))
        values.append(CalibratedValue(
            "interface_line_words", value, "per_character",
            "words per character against English's (an interface line of 8 English words, as characters)",
            None, _r(1 / wpc_ratio), f"English {en.interface_line_words} x {1 / wpc_ratio:.3f}"))

    # Ratios guarded only: never stricter than the English default, nor than the clean quantile.
    for setting, stat, q, widen, unit in (
        ("max_non_alpha_words_ratio", "non_alpha_words_ratio", hi, max, "windows"),
        ("min_line_punct_ratio", "line_punct_ratio", lo, min, "multi-line documents"),
        ("max_short_lines_ratio", "short_lines_ratio", hi, max, "multi-line documents"),
    ):
        current = getattr(base, setting)
        if current is None:
            continue
        if not len(getattr(stats, stat)):
            values.append(CalibratedValue(setting, current, "default", f"{stat}: no {unit} in the reference",
                                          None, None))
            continue
        guard = stats.quantile(stat, q)
        value = widen(current, guard)
        values.append(CalibratedValue(
            setting, _r(value), "guard" if value != current else "default",
            f"{stat} over {len(getattr(stats, stat))} {unit}", q, _r(guard),
            f"default {current}; clean-text quantile {guard:.4f}"))

    return Calibration(
        language=language,
        values=tuple(values),
        reference={"name": reference_name, "documents": stats.documents, "windows": stats.windows,
                   "characters": stats.chars, "sha256": stats.sha256},
        anchor=anchor.as_dict(),
        share=share,
        created=(today or _dt.date.today()).isoformat(),
        xinst_version=_xinst_version(),
    )


def calibrate_language(
    lang: Any,
    texts: Iterable[str],
    anchor: Anchor,
    reference_name: str,
    share: float = DEFAULT_SHARE,
    today: _dt.date | None = None,
) -> Calibration:
    """Calibrate the registry language ``lang`` (a :class:`~xinst_assets.languages.Language`) on ``texts``:
    its script's defaults are the starting point (its current calibration and manual overrides are not)."""
    from xinst_assets.core.quality import script_thresholds

    stats = measure_reference(texts, lang.script)
    return calibrate(lang.code, stats, anchor, script_thresholds(lang.script), reference_name, share, today)


def anchor_from_texts(texts: Iterable[str], reference_name: str) -> tuple[Anchor, dict[str, Any]]:
    """English's anchor measured on English ``texts``, and its stored form (with the reference's size)."""
    stats = measure_reference(texts, "Latn")
    anchor = Anchor.from_stats(stats, reference_name)
    stored = {**anchor.as_dict(), "documents": stats.documents, "windows": stats.windows,
              "characters": stats.chars, "sha256": stats.sha256, "calibration_version": CALIBRATION_VERSION,
              "xinst_version": _xinst_version()}
    return anchor, stored


def load_anchor(path: str | Path) -> Anchor:
    """The English anchor stored at ``path`` (YAML written by :func:`anchor_from_texts`)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    try:
        return Anchor.from_mapping(data.get("anchor", data))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not an English anchor (needs words_per_char and mean_word_length)") from exc


def _xinst_version() -> str:
    try:
        return metadata.version("xinst")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


__all__ = [
    "Anchor",
    "CALIBRATED_SETTINGS",
    "CalibratedValue",
    "Calibration",
    "DEFAULT_SHARE",
    "ReferenceStats",
    "anchor_from_texts",
    "calibrate",
    "calibrate_language",
    "load_anchor",
    "measure_reference",
    "read_reference",
    "sample_reference",
    "windows",
]
