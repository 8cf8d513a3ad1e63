"""Accuracy of stage 2 against a hand-labelled evaluation set (language ID, quality, end to end).

The set's format (one JSONL file per language and part, original text):

* ``lid/<code>.jsonl``: documents of a registry language, ``kind`` one of ``clean`` (expected kept in partition
  ``lang``), ``short`` (a line of 5-120 characters: LID accuracy on short text), ``mixed`` (a post mixing
  languages; ``lang`` is the language holding most of its characters: kept in the file's partition when that
  is ``lang``, dropped otherwise) and ``boilerplate`` (expected dropped);
* ``distractors/<code>.jsonl``: texts of languages that no partition may keep (Malay, Estonian, Marathi,
  Nepali, Persian, Lao, Zulu, Azerbaijani, English);
* ``quality/<code>.jsonl``: documents labelled ``good`` or ``bad`` (with the ``defect``), for the quality rules
  alone;
* ``near_duplicates/<code>.jsonl``: dedup groups (measured by ``bench/bench_dedup_accuracy.py``).

End to end means what the assets do: every partition screens *every* document of ``lid/`` and
``distractors/`` (foreign ones included, as a crawl's partition holds them) with length, LID, quality, and
exact + near dedup (:func:`~xinst_assets.core.filtering.run_language_filter`). Per partition ``L``:

* recall: the clean documents of ``L`` that ``L`` keeps, over all clean documents of ``L``;
* precision: the kept documents that are text of ``L`` (``lang`` is ``L`` and the kind is not boilerplate),
  over all documents ``L`` keeps;
* mixed kept: the mixed posts of ``lid/L`` whose ``lang`` is ``L`` that ``L`` keeps (and separately the mixed
  posts mostly in another language that ``L`` drops);
* boilerplate dropped, and the distractors kept by any partition (each one a precision error).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from xinst_assets.core.filtering import Document, FilterDecision, FilterSettings, run_language_filter
from xinst_assets.core.lid import LanguageIdentifier
from xinst_assets.core.quality import assess_quality_batch
from xinst_assets.languages import Language, LanguageRegistry

KINDS = ("clean", "short", "mixed", "boilerplate")
QUALITY_LABELS = ("good", "bad")


@dataclass(frozen=True)
class EvalItem:
    """One document of ``lid/`` or ``distractors/``."""

    id: str
    lang: str  # the language holding most of its characters
    kind: str
    text: str
    file: str  # the code of the file it is in (the partition it was written for)
    genre: str = ""
    distractor: bool = False


@dataclass(frozen=True)
class QualityItem:
    """One quality-labelled document."""

    id: str
    lang: str
    quality: str  # good | bad
    defect: str | None
    text: str


@dataclass
class EvalSet:
    """A loaded evaluation set."""

    root: Path
    items: list[EvalItem] = field(default_factory=list)
    quality: list[QualityItem] = field(default_factory=list)
    near_duplicates: list[dict] = field(default_factory=list)

    @property
    def lid_languages(self) -> list[str]:
        """The languages with a ``lid/`` file."""
        return sorted({i.file for i in self.items if not i.distractor})

    @property
    def distractor_languages(self) -> list[str]:
        return sorted({i.file for i in self.items if i.distractor})


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: expected an object")
        row["_where"] = f"{path.name}:{number}"
        rows.append(row)
    return rows


def _need(row: dict, *keys: str) -> None:
    missing = [k for k in keys if not row.get(k)]
    if missing:
        raise ValueError(f"{row['_where']}: missing {', '.join(missing)}")


def load_eval_set(root: str | Path) -> EvalSet:
    """Load the evaluation set under ``root`` (any of its four folders may be missing); ids must be unique
    and every row well formed, else a clear error naming the file and line."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"evaluation set not found: {root}")
    out = EvalSet(root)
    seen: dict[str, str] = {}

    def unique(row: dict) -> None:
        if row["id"] in seen:
            raise ValueError(f"{row['_where']}: id {row['id']!r} already used at {seen[row['id']]}")
        seen[row["id"]] = row["_where"]

    for folder, distractor in (("lid", False), ("distractors", True)):
        for path in sorted((root / folder).glob("*.jsonl")):
            for row in _read_jsonl(path):
                _need(row, "id", "lang", "kind", "text")
                if row["kind"] not in KINDS:
                    raise ValueError(f"{row['_where']}: kind {row['kind']!r} is not one of {KINDS}")
                unique(row)
                out.items.append(EvalItem(row["id"], row["lang"], row["kind"], row["text"], path.stem,
                                          str(row.get("genre") or ""), distractor))
    for path in sorted((root / "quality").glob("*.jsonl")):
        for row in _read_jsonl(path):
            _need(row, "id", "lang", "quality", "text")
            if row["quality"] not in QUALITY_LABELS:
                raise ValueError(f"{row['_where']}: quality {row['quality']!r} is not one of {QUALITY_LABELS}")
            unique(row)
            out.quality.append(QualityItem(row["id"], row["lang"], row["quality"], row.get("defect"), row["text"]))
    for path in sorted((root / "near_duplicates").glob("*.jsonl")):
        for row in _read_jsonl(path):
            _need(row, "id", "lang", "group", "role", "text")
            unique(row)
            out.near_duplicates.append({k: v for k, v in row.items() if k != "_where"})
    return out


# --- End to end --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionResult:
    """End-to-end figures of one partition."""

    lang: str
    clean_total: int
    clean_kept: int
    kept_total: int
    kept_correct: int
    mixed_total: int  # mixed posts of lid/<lang> mostly in <lang>
    mixed_kept: int
    mixed_foreign_total: int  # mixed posts of lid/<lang> mostly in another language
    mixed_foreign_dropped: int
    boilerplate_total: int
    boilerplate_dropped: int
    missed: tuple[tuple[str, str], ...] = ()  # clean documents dropped: (id, reason)
    wrong: tuple[tuple[str, str, str], ...] = ()  # kept documents that are not text of <lang>: (id, lang, kind)
    missed_mixed: tuple[tuple[str, str], ...] = ()

    @property
    def recall(self) -> float:
        return self.clean_kept / self.clean_total if self.clean_total else 1.0

    @property
    def precision(self) -> float:
        return self.kept_correct / self.kept_total if self.kept_total else 1.0

    @property
    def mixed_kept_rate(self) -> float:
        return self.mixed_kept / self.mixed_total if self.mixed_total else 1.0


@dataclass(frozen=True)
class QualityResult:
    """The quality rules alone on the quality-labelled documents of one language."""

    lang: str
    good_total: int
    good_kept: int
    bad_total: int
    bad_dropped: int
    missed_good: tuple[tuple[str, str], ...] = ()  # (id, reason)
    kept_bad: tuple[tuple[str, str], ...] = ()  # (id, defect)

    @property
    def good_kept_rate(self) -> float:
        return self.good_kept / self.good_total if self.good_total else 1.0

    @property
    def bad_dropped_rate(self) -> float:
        return self.bad_dropped / self.bad_total if self.bad_total else 1.0


@dataclass(frozen=True)
class ShortLidResult:
    """Language ID of the short lines of one language: how many the LID decision gives their language."""

    lang: str
    total: int
    correct: int
    fasttext_correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 1.0


@dataclass
class EvalReport:
    """Everything :func:`evaluate` measured."""

    partitions: dict[str, PartitionResult]
    quality: dict[str, QualityResult]
    short: dict[str, ShortLidResult]
    leaks: dict[str, Counter]  # distractor or foreign language -> partitions that kept its documents
    label: str = ""

    def accuracy_rows(self) -> list[list[str]]:
        rows = []
        for code, p in sorted(self.partitions.items()):
            q = self.quality.get(code)
            s = self.short.get(code)
            rows.append([
                code, f"{p.precision:.3f}", f"{p.recall:.3f} ({p.clean_kept}/{p.clean_total})",
                f"{p.mixed_kept_rate:.2f} ({p.mixed_kept}/{p.mixed_total})",
                f"{p.mixed_foreign_dropped}/{p.mixed_foreign_total}",
                f"{p.boilerplate_dropped}/{p.boilerplate_total}",
                f"{s.accuracy:.2f}" if s else "-",
                f"{q.good_kept}/{q.good_total}" if q else "-",
                f"{q.bad_dropped}/{q.bad_total}" if q else "-",
            ])
        return rows

    def markdown(self) -> str:
        """The per-language table, then the totals."""
        head = ["lang", "precision", "clean recall", "mixed kept", "foreign mixed dropped",
                "boilerplate dropped", "short-line LID", "quality: good kept", "quality: bad dropped"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in self.accuracy_rows()]
        t = self.totals()
        lines.append(
            f"| all | {t['precision']:.3f} | {t['recall']:.3f} | {t['mixed_kept']:.2f} | - | - | "
            f"{t['short_lid']:.2f} | {t['good_kept']:.2f} | {t['bad_dropped']:.2f} |")
        return "\n".join(lines)

    def totals(self) -> dict[str, float]:
        ps = list(self.partitions.values())
        qs = list(self.quality.values())
        ss = list(self.short.values())

        def ratio(a: int, b: int) -> float:
            return a / b if b else 1.0

        return {
            "precision": ratio(sum(p.kept_correct for p in ps), sum(p.kept_total for p in ps)),
            "recall": ratio(sum(p.clean_kept for p in ps), sum(p.clean_total for p in ps)),
            "mixed_kept": ratio(sum(p.mixed_kept for p in ps), sum(p.mixed_total for p in ps)),
            "short_lid": ratio(sum(s.correct for s in ss), sum(s.total for s in ss)),
            "good_kept": ratio(sum(q.good_kept for q in qs), sum(q.good_total for q in qs)),
            "bad_dropped": ratio(sum(q.bad_dropped for q in qs), sum(q.bad_total for q in qs)),
        }

    def errors(self) -> str:
        """Every miss and wrong keep, one per line (for reading what went wrong)."""
        lines = []
        for code, p in sorted(self.partitions.items()):
            lines += [f"{code}: clean missed {i} ({r})" for i, r in p.missed]
            lines += [f"{code}: mixed missed {i} ({r})" for i, r in p.missed_mixed]
            lines += [f"{code}: kept {i} (lang {lg}, {k})" for i, lg, k in p.wrong]
        for code, q in sorted(self.quality.items()):
            lines += [f"{code}: good dropped {i} ({r})" for i, r in q.missed_good]
            lines += [f"{code}: bad kept {i} ({d})" for i, d in q.kept_bad]
        return "\n".join(lines)


SettingsFor = Callable[[Language], FilterSettings]


def _default_settings(lang: Language) -> FilterSettings:
    return FilterSettings.for_language(lang)


def evaluate_partition(
    eval_set: EvalSet, lang: Language, identifier: LanguageIdentifier, settings: FilterSettings
) -> tuple[PartitionResult, list[FilterDecision]]:
    """Partition ``lang`` screens every document of the set end to end; its figures and decisions."""
    items = eval_set.items
    docs = [Document(i.id, i.text) for i in items]
    decisions = run_language_filter(docs, lang, identifier, settings)
    code = lang.code
    clean = [(i, d) for i, d in zip(items, decisions) if i.kind == "clean" and i.lang == code and not i.distractor]
    kept = [(i, d) for i, d in zip(items, decisions) if d.keep]
    mine = [(i, d) for i, d in zip(items, decisions) if i.file == code and not i.distractor]
    mixed = [(i, d) for i, d in mine if i.kind == "mixed" and i.lang == code]
    foreign_mixed = [(i, d) for i, d in mine if i.kind == "mixed" and i.lang != code]
    boiler = [(i, d) for i, d in mine if i.kind == "boilerplate"]
    correct = [(i, d) for i, d in kept if i.lang == code and i.kind != "boilerplate"]
    result = PartitionResult(
        lang=code,
        clean_total=len(clean),
        clean_kept=sum(d.keep for _, d in clean),
        kept_total=len(kept),
        kept_correct=len(correct),
        mixed_total=len(mixed),
        mixed_kept=sum(d.keep for _, d in mixed),
        mixed_foreign_total=len(foreign_mixed),
        mixed_foreign_dropped=sum(not d.keep for _, d in foreign_mixed),
        boilerplate_total=len(boiler),
        boilerplate_dropped=sum(not d.keep for _, d in boiler),
        missed=tuple((i.id, d.reason or "?") for i, d in clean if not d.keep),
        wrong=tuple((i.id, i.lang, i.kind) for i, d in kept if not (i.lang == code and i.kind != "boilerplate")),
        missed_mixed=tuple((i.id, d.reason or "?") for i, d in mixed if not d.keep),
    )
    return result, decisions


def evaluate_quality(eval_set: EvalSet, lang: Language, settings: FilterSettings) -> QualityResult | None:
    """The quality rules alone (lengths included) on the quality-labelled documents of ``lang``."""
    items = [q for q in eval_set.quality if q.lang == lang.code]
    if not items:
        return None
    verdicts = assess_quality_batch([q.text for q in items], lang.script, settings.quality)
    good = [(q, v) for q, v in zip(items, verdicts) if q.quality == "good"]
    bad = [(q, v) for q, v in zip(items, verdicts) if q.quality == "bad"]
    return QualityResult(
        lang=lang.code,
        good_total=len(good),
        good_kept=sum(v.reason is None for _, v in good),
        bad_total=len(bad),
        bad_dropped=sum(v.reason is not None for _, v in bad),
        missed_good=tuple((q.id, v.reason or "") for q, v in good if v.reason is not None),
        kept_bad=tuple((q.id, q.defect or "") for q, v in bad if v.reason is None),
    )


def evaluate_short_lines(
    eval_set: EvalSet, lang: Language, identifier: LanguageIdentifier, settings: FilterSettings
) -> ShortLidResult | None:
    """The LID decision alone (no length rule) on the short lines of ``lid/<lang>``: how many it keeps in
    their language's partition, and how many fastText's top label names."""
    from xinst_assets.core.filtering import DocumentScreener

    items = [i for i in eval_set.items if i.kind == "short" and i.file == lang.code and i.lang == lang.code]
    if not items:
        return None
    screener = DocumentScreener(lang, identifier, settings)
    texts = [i.text for i in items]
    predictions = identifier.predict(texts)
    if hasattr(screener, "decide_languages"):
        kept = [v.keep for v in screener.decide_languages(texts, predictions)]
    else:  # code from before the second opinion (the bench's baseline): fastText's rule alone
        from xinst_assets.core.lid import decide_language

        kept = [decide_language(p, lang, settings.lid_policy)[0] for p in predictions]
    return ShortLidResult(lang.code, len(items), sum(kept), sum(p.lang == lang.code for p in predictions))


def evaluate(
    eval_set: EvalSet,
    registry: LanguageRegistry | Iterable[Language],
    identifier: LanguageIdentifier,
    settings_for: SettingsFor = _default_settings,
    label: str = "",
) -> EvalReport:
    """Every figure of the set for every registry language that has a ``lid/`` file."""
    languages = [lang for lang in registry if lang.code in eval_set.lid_languages]
    partitions: dict[str, PartitionResult] = {}
    quality: dict[str, QualityResult] = {}
    short: dict[str, ShortLidResult] = {}
    leaks: dict[str, Counter] = {}
    by_id = {i.id: i for i in eval_set.items}
    for lang in languages:
        settings = settings_for(lang)
        result, decisions = evaluate_partition(eval_set, lang, identifier, settings)
        partitions[lang.code] = result
        for d in decisions:
            item = by_id[d.doc_id]
            if d.keep and item.lang != lang.code:
                leaks.setdefault(item.lang, Counter())[lang.code] += 1
        q = evaluate_quality(eval_set, lang, settings)
        if q is not None:
            quality[lang.code] = q
        s = evaluate_short_lines(eval_set, lang, identifier, settings)
        if s is not None:
            short[lang.code] = s
    return EvalReport(partitions, quality, short, leaks, label)


def targets_missed(report: EvalReport, targets: Mapping[str, float] | None = None) -> list[str]:
    """The targets of the language-filtering goal that ``report`` misses, one line each (empty: all met)."""
    t = {"precision": 0.98, "recall": 0.95, "mixed_kept": 0.8, "good_kept": 0.9, "bad_dropped": 0.95,
         **(targets or {})}
    missed = []
    for code, p in sorted(report.partitions.items()):
        if p.precision < t["precision"]:
            missed.append(f"{code}: precision {p.precision:.3f} < {t['precision']}")
        if p.recall < t["recall"]:
            missed.append(f"{code}: clean recall {p.recall:.3f} < {t['recall']}")
    totals = report.totals()
    for key in ("mixed_kept", "good_kept", "bad_dropped"):
        if totals[key] < t[key]:
            missed.append(f"all: {key} {totals[key]:.3f} < {t[key]}")
    return missed


__all__ = [
    "EvalItem",
    "EvalReport",
    "EvalSet",
    "PartitionResult",
    "QualityItem",
    "QualityResult",
    "ShortLidResult",
    "evaluate",
    "evaluate_partition",
    "evaluate_quality",
    "evaluate_short_lines",
    "load_eval_set",
    "targets_missed",
]
