"""Stage 2 composed: language ID, quality heuristics, then global dedup over the survivors.

Every document gets exactly one :class:`FilterDecision`: kept, or dropped with one reason prefixed by the
filter that dropped it (``lid_...``, ``quality_...``, ``dedup_...``). Cheap checks run first: the length
bounds (a ``len``), then fastText on the documents that remain (one batch call), then the other quality rules
(over the whole batch at once). The survivors' MinHash signatures are computed in the same pass from the same
words (:class:`DocumentScreener`), so that dedup, which runs afterwards over every survivor of a language
(:func:`apply_dedup`, or the streaming :class:`~xinst_assets.core.dedup.NearDuplicateIndex`) since duplicates
are found across batches and runs, never needs the texts again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable, Mapping, Sequence

import numpy as np

from xinst_assets.core.dedup import (
    DedupCandidate,
    DedupOutcome,
    MinhashConfig,
    MinhashSigner,
    deduplicate,
)
from xinst_assets.core.lid import LanguageIdentifier, LidPolicy
from xinst_assets.core.lid_decision import LanguageJudge, LidVerdict
from xinst_assets.core.second_lid import SecondOpinion, default_second_opinion
from xinst_assets.core.quality import (
    TOO_LONG,
    TOO_SHORT,
    QualityThresholds,
    QualityVerdict,
    assess_quality_batch,
    thresholds_for,
)
from xinst_assets.core.text import content_id
from xinst_assets.core.words import TextBatch, Vocabulary
from xinst_assets.languages import Language

# The label of the sample data (data/sample/labels/<lang>.jsonl) that stage 2 should keep; every other label
# (near_duplicate, exact_duplicate, wrong_language, boilerplate, too_short) should be dropped.
KEEP_LABEL = "clean"


@dataclass(frozen=True)
class Document:
    """One raw document of a language partition."""

    doc_id: str
    text: str
    seen_at: str | None = None  # ISO 8601: when the pipeline first ingested it
    published_at: str | None = None  # ISO 8601: the document's own timestamp


@dataclass(frozen=True)
class FilterDecision:
    """What stage 2 decided for one document, with the measurements behind it."""

    doc_id: str
    lang: str
    keep: bool
    reason: str | None = None
    lid_lang: str | None = None  # None when the document was dropped before language ID
    lid_score: float | None = None
    lid_runner_up: str | None = None
    lid_runner_up_score: float | None = None
    chars: int = 0
    words: int | None = None
    duplicate_of: str | None = None
    cluster_size: int | None = None  # for survivors of dedup: documents in its cluster, itself included
    lid_decided_by: str | None = None  # fasttext | segments | fasttext_gap | second_opinion
    lid_second_lang: str | None = None  # the second-opinion model's choice, when it was asked
    lid_second_score: float | None = None
    lid_english_share: float | None = None  # share of English characters, for segmented documents

    @property
    def filter_name(self) -> str | None:
        """``lid``, ``quality`` or ``dedup`` for a dropped document."""
        return self.reason.split("_", 1)[0] if self.reason else None


@dataclass(frozen=True)
class FilterSettings:
    """Everything that decides stage 2 for one language (recorded in materialization metadata)."""

    quality: QualityThresholds
    lid_policy: LidPolicy = LidPolicy()
    minhash: MinhashConfig = MinhashConfig()

    @classmethod
    def for_language(cls, lang: Language, calibrated: bool = True, **overrides) -> "FilterSettings":
        """The registry's settings for ``lang`` (quality thresholds with the script's defaults, the
        language's calibration unless ``calibrated`` is False, and its manual overrides)."""
        return cls(quality=thresholds_for(lang, calibrated=calibrated), **overrides)

    def as_metadata(self) -> dict[str, object]:
        """A JSON-friendly record of every setting, for materialization metadata."""
        minhash = {
            **asdict(self.minhash),
            "num_perm": self.minhash.num_perm,
            "jaccard_threshold": round(self.minhash.threshold, 3),
            "fingerprint": self.minhash.fingerprint,
        }
        return {
            "quality": self.quality.as_metadata(),
            "lid_policy": asdict(self.lid_policy),
            "minhash": minhash,
        }


@dataclass
class ScreenedBatch:
    """LID and quality decisions for a batch, with the MinHash signatures of the documents kept."""

    decisions: list[FilterDecision]
    kept: np.ndarray  # indices (into the batch) of the kept documents
    signatures: np.ndarray | None  # (len(kept), num_perm) uint64, when asked for
    shingled: list[bool] | None  # per kept document: whether it had any shingle
    content_keys: list[str] | None = None  # per kept document: content_id(text), when asked for


class DocumentScreener:
    """Stage 2's per-document work for one language: length, LID, quality, and the survivors' signatures.

    Keeps its word vocabulary (and the SHA-1 of each word for MinHash) across batches, so a word seen in an
    earlier batch costs a dictionary lookup.
    """

    def __init__(
        self,
        lang: Language,
        identifier: LanguageIdentifier,
        settings: FilterSettings | None = None,
        second: SecondOpinion | None | bool = True,
    ) -> None:
        """``second``: the second-opinion model (True: this process's lingua, when the policy asks for one and
        lingua is installed; None or False: fastText alone)."""
        self.lang = lang
        self.identifier = identifier
        self.settings = settings or FilterSettings.for_language(lang)
        self.vocabulary = Vocabulary()
        self.signer = MinhashSigner(self.settings.minhash, self.vocabulary)
        if second is True:
            second = process_second_opinion() if self.settings.lid_policy.second_opinion else None
        self.judge = LanguageJudge(lang, identifier, self.settings.lid_policy, second or None,
                                   identifier.neighbours(lang))

    def decide_languages(self, texts: Sequence[str], predictions: Sequence) -> list[LidVerdict]:
        """The language decision of each text given fastText's predictions (:class:`LanguageJudge`)."""
        return self.judge.judge(texts, predictions)

    def screen(
        self, docs: Sequence[Document], signatures: bool = True, content_keys: bool = False
    ) -> ScreenedBatch:
        """One decision per document (input order); signatures of the kept ones if ``signatures``, and their
        content ids if ``content_keys`` (the assets have them: a raw document's doc id is its content id)."""
        lang, q = self.lang, self.settings.quality
        decisions: list[FilterDecision | None] = [None] * len(docs)
        to_identify: list[int] = []
        for i, doc in enumerate(docs):
            n = len(doc.text)
            if q.min_chars is not None and n < q.min_chars:
                decisions[i] = FilterDecision(doc.doc_id, lang.code, False, TOO_SHORT, chars=n)
            elif q.max_chars is not None and n > q.max_chars:
                decisions[i] = FilterDecision(doc.doc_id, lang.code, False, TOO_LONG, chars=n)
            else:
                to_identify.append(i)
        texts = [docs[i].text for i in to_identify]
        predictions = self.identifier.predict(texts)
        languages = self.decide_languages(texts, predictions)
        passed = [i for i, v in zip(to_identify, languages) if v.keep]
        verdicts: dict[int, QualityVerdict] = {}
        signed: dict[int, tuple[np.ndarray, bool]] = {}
        keys: dict[int, str] = {}
        for chunk in _chunks(passed, [len(docs[i].text) for i in passed], CHUNK_CHARS):
            # Words, quality and signatures a chunk at a time: the arrays of a batch take about 60 bytes per
            # character, so a chunk bounds the memory whatever the batch size.
            batch = TextBatch([docs[i].text for i in chunk])
            ids = self.vocabulary.ids(batch.words)
            found = assess_quality_batch(batch.texts, lang.script, q, batch, ids)
            verdicts.update(zip(chunk, found))
            rows = np.array([k for k, v in enumerate(found) if v.reason is None], dtype=np.int64)
            if signatures and len(rows):
                matrix, shingled = self.signer.signatures_of(batch, ids, lang.script, rows)
                signed.update((chunk[k], (m, h)) for k, m, h in zip(rows.tolist(), matrix, shingled))
            if content_keys and len(rows):
                nfc = batch.nfc[rows].tolist()
                keys.update((chunk[k], content_id(docs[chunk[k]].text, n)) for k, n in zip(rows.tolist(), nfc))
        for i, pred, lid in zip(to_identify, predictions, languages):
            doc = docs[i]
            words = None
            keep, reason = lid.keep, lid.reason
            if keep:
                verdict = verdicts[i]
                reason, words, keep = verdict.reason, verdict.words, verdict.reason is None
            decisions[i] = FilterDecision(
                doc.doc_id,
                lang.code,
                keep,
                reason,
                pred.lang,
                round(pred.score, 4),
                pred.runner_up,
                round(pred.runner_up_score, 4),
                chars=len(doc.text),
                words=words,
                lid_decided_by=lid.decided_by,
                lid_second_lang=lid.second_lang,
                lid_second_score=lid.second_score,
                lid_english_share=lid.english_share,
            )
        kept = np.array([i for i, d in enumerate(decisions) if d is not None and d.keep], dtype=np.int64)
        matrix = shingled = None
        if signatures:
            matrix = np.empty((len(kept), self.settings.minhash.num_perm), dtype=np.uint64)
            for row, i in enumerate(kept.tolist()):
                matrix[row] = signed[i][0]
            shingled = [signed[i][1] for i in kept.tolist()]
        return ScreenedBatch(
            [d for d in decisions if d is not None],
            kept,
            matrix,
            shingled,
            [keys[i] for i in kept.tolist()] if content_keys else None,
        )


def process_second_opinion() -> SecondOpinion | None:
    """This process's second-opinion model, or None when lingua is not installed (fastText then decides
    alone; the settings key records which, so verdicts are recomputed once it is installed)."""
    try:
        return default_second_opinion()
    except ImportError:
        return None


# Characters per TextBatch inside a screened batch (see DocumentScreener.screen).
CHUNK_CHARS = 500_000


def _chunks(items: list[int], sizes: list[int], limit: int) -> list[list[int]]:
    """``items`` in consecutive chunks of at most ``limit`` total size (a larger item is a chunk alone)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for item, size in zip(items, sizes):
        if current and total + size > limit:
            chunks.append(current)
            current, total = [], 0
        current.append(item)
        total += size
    if current:
        chunks.append(current)
    return chunks


def filter_documents(
    docs: Sequence[Document],
    lang: Language,
    identifier: LanguageIdentifier,
    settings: FilterSettings | None = None,
) -> list[FilterDecision]:
    """LID and quality for one batch of one language; one decision per document, in input order."""
    return DocumentScreener(lang, identifier, settings).screen(docs, signatures=False).decisions


def apply_dedup(
    decisions: Sequence[FilterDecision],
    docs: Sequence[Document],
    lang: Language,
    settings: FilterSettings | None = None,
) -> tuple[list[FilterDecision], DedupOutcome]:
    """Dedup the kept documents among ``decisions`` (aligned with ``docs``); others pass through unchanged."""
    if len(decisions) != len(docs):
        raise ValueError(f"{len(decisions)} decisions for {len(docs)} documents: they must be aligned")
    settings = settings or FilterSettings.for_language(lang)
    survivors = [i for i, d in enumerate(decisions) if d.keep]
    outcome = deduplicate(
        [DedupCandidate(docs[i].doc_id, docs[i].text) for i in survivors], lang.script, settings.minhash
    )
    merged = list(decisions)
    for i, dd in zip(survivors, outcome.decisions):
        if dd.keep:
            merged[i] = replace(merged[i], cluster_size=outcome.cluster_sizes.get(dd.doc_id, 1))
        else:
            merged[i] = replace(merged[i], keep=False, reason=dd.reason, duplicate_of=dd.duplicate_of)
    return merged, outcome


def run_language_filter(
    docs: Sequence[Document],
    lang: Language,
    identifier: LanguageIdentifier,
    settings: FilterSettings | None = None,
) -> list[FilterDecision]:
    """All of stage 2 for one language in memory (LID, quality, dedup): for tests, the bench and the demo."""
    settings = settings or FilterSettings.for_language(lang)
    decisions = filter_documents(docs, lang, identifier, settings)
    merged, _ = apply_dedup(decisions, docs, lang, settings)
    return merged


def reason_counts(decisions: Iterable[FilterDecision]) -> Counter:
    """How many documents each reason dropped (``kept`` for the survivors)."""
    return Counter(d.reason or "kept" for d in decisions)


@dataclass(frozen=True)
class LabelEvaluation:
    """Filter quality against hand labels for one language."""

    lang: str
    clean_total: int
    clean_kept: int
    kept_total: int
    kept_by_label: Mapping[str, int] = field(default_factory=dict)
    dropped_by_label: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def recall(self) -> float:
        """Share of the documents labelled clean that were kept."""
        return self.clean_kept / self.clean_total if self.clean_total else 1.0

    @property
    def precision(self) -> float:
        """Share of the kept documents that are labelled clean (a kept duplicate counts as wrong)."""
        return self.clean_kept / self.kept_total if self.kept_total else 1.0


def evaluate_on_labels(
    decisions: Sequence[FilterDecision],
    labels: Sequence[str],
    groups: Sequence[str | None] | None = None,
) -> dict[str, LabelEvaluation]:
    """Per-language recall of the clean documents and precision of the kept set.

    ``labels`` is aligned with ``decisions`` (the label of each document: ``clean``, ``near_duplicate``,
    ``exact_duplicate``, ``wrong_language``, ``boilerplate``, ``too_short`` ...). ``groups``, also aligned,
    names the duplicate group of each document (the same key for an original and its copies, ``None``
    elsewhere). Which copy of a group survives is dedup's ordering policy, not a quality property: when the
    original was dropped as a duplicate of a kept copy, the two swap labels, so a group counts as right when
    exactly one of its members is kept, whichever it is.
    """
    if len(decisions) != len(labels) or (groups is not None and len(groups) != len(labels)):
        raise ValueError(f"{len(decisions)} decisions, {len(labels)} labels and groups must be aligned")
    effective = list(labels)
    if groups is not None:
        members: dict[str, list[int]] = {}
        for i, group in enumerate(groups):
            if group is not None:
                members.setdefault(group, []).append(i)
        for indices in members.values():
            originals = [i for i in indices if effective[i] == KEEP_LABEL and not decisions[i].keep]
            copies = [i for i in indices if effective[i] != KEEP_LABEL and decisions[i].keep]
            for original, copy in zip(originals, copies):
                effective[original], effective[copy] = effective[copy], effective[original]
    by_lang: dict[str, list[tuple[FilterDecision, str]]] = {}
    for decision, label in zip(decisions, effective):
        by_lang.setdefault(decision.lang, []).append((decision, label))
    out: dict[str, LabelEvaluation] = {}
    for code, pairs in by_lang.items():
        kept = Counter(label for d, label in pairs if d.keep)
        dropped: dict[str, Counter] = {}
        for d, label in pairs:
            if not d.keep:
                dropped.setdefault(label, Counter())[d.reason or "?"] += 1
        out[code] = LabelEvaluation(
            lang=code,
            clean_total=sum(1 for _, label in pairs if label == KEEP_LABEL),
            clean_kept=kept[KEEP_LABEL],
            kept_total=sum(kept.values()),
            kept_by_label=dict(kept),
            dropped_by_label={label: dict(c) for label, c in dropped.items()},
        )
    return out
