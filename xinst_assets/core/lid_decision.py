"""The language decision of a partition: fastText first, a second opinion for the uncertain band, and
mixed-language documents.

The rule, for a document screened by the partition of language ``L`` (``C``: ``L``'s confusable languages
from the registry, e.g. Malay for Indonesian; settings in :class:`~xinst_assets.core.lid.LidPolicy`):

1. **fastText sure, keep**: its top language is ``L`` with at least ``sure_score`` (0.9), and no confusable
   language is its runner-up with ``confusable_floor`` or more. (lid.176 may put a Malay text first as
   Indonesian with 0.6: a confusable runner-up always asks the second model.)
2. **fastText sure, drop**: its top language is not ``L``, not in ``C``, not English, has at least
   ``reject_score`` (0.5), and ``L`` is not its runner-up (``lid_wrong_language:<top>``).
3. Otherwise the document is **uncertain**:

   a. *Mixed documents* (``mixed``): when it holds English function words (two distinct ones or more), its
      segments (lines, quotations apart from the sentence around them, sentences of long lines) of
      ``segment_min_chars`` or more are identified by fastText in one batch. The
      English share is the expected share of English characters (each segment fastText labels English counts
      its length times fastText's probability, so a sentence with an English error message run into it counts
      about half). Over ``max_english_share`` (0.5) the document is mostly English: dropped
      (``lid_wrong_language:en``). Otherwise the segments labelled English with ``segment_english_score``
      (0.5) or more are set aside and the rest is what is judged (fastText predicts it again): a post mostly
      in ``L`` that quotes an error message or an e-mail line is judged on its ``L`` text. If fastText is now
      sure of ``L`` (rule 1), it is kept.
   b. *Languages the second model lacks*: fastText knows them and the second model cannot name them, so
      fastText is trusted: dropped (``lid_wrong_language:<it>``) when fastText names one first with at least
      ``reject_score`` (0.5; Assamese for Bengali), or names a confusable one (Nepali for Hindi and Lao for
      Thai, with lingua) first or second with at least ``gap_score`` (0.3).
   c. *Second opinion*: lingua decides among candidates. When fastText names ``L`` first with at least
      ``reject_score`` (0.5), or ``narrow_lead`` (2) times its runner-up's score (clean Swahili: 0.25 against
      0.03), or beside a confusable runner-up, lingua checks ``L`` against its family: ``C`` and English.
      Otherwise
      the candidates are broad: ``L``, ``C``, English and the registry's other languages of ``L``'s script
      with their confusable languages (lingua only chooses among its candidates, so a Zulu text judged among
      Indonesian, Malay and English alone would go to the nearest of them; among every language of the
      script the project knows it goes to Zulu). Kept when lingua names ``L`` with at least
      ``second_min_score`` (0.5) confidence; else dropped (``lid_wrong_language:<lingua's choice>``, or
      ``lid_low_score`` when it names ``L`` with less). Lingua reads the first ``second_chars`` (300)
      characters of the text (without its English segments), 600 for a family of varieties with word cues
      (Indonesian and Malay need them): its cost grows with the length and the candidates;
      English is left out of the family of a text without English words (two candidates cost less).
   d. *Word cues* (``config/lid_cues.yaml``): for a pair that no available model separates reliably
      (Indonesian and Malaysian Malay), the text's distinct cue words decide where they are clear: at least
      ``CUE_MIN_HITS`` (2) of one variety and more than of the other (``lid_wrong_language:ms``, decided by
      ``word_cues``). They overrule lingua when it chose one of the two; a text without English words that
      fastText already puts in the family is decided by them without asking lingua.

Without a second model (``second_opinion`` off, lingua not installed, or ``L`` unknown to it), fastText decides
alone as before (:func:`~xinst_assets.core.lid.decide_language`).

Both models' labels and scores go into the audit trail (``document_signals``): fastText's top two, the second
model's choice and confidence when it was asked, who decided (``fasttext``, ``segments``, ``fasttext_gap``,
``second_opinion``) and the English share of a segmented document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from xinst_assets.core.lid import (
    LID_LOW_SCORE,
    LID_WRONG_LANGUAGE,
    LanguageIdentifier,
    LidPolicy,
    LidPrediction,
    decide_language,
)
from xinst_assets.core.second_lid import SecondOpinion
from xinst_assets.languages import Language

ENGLISH = "en"
# Sentence ends inside a long line: Latin, the danda, the Urdu/Arabic full stop and question mark, CJK.
_SENTENCE_END = re.compile(r"(?<=[.!?।॥۔؟。！？])\s+")
LONG_LINE_CHARS = 200  # lines longer than this are split into sentences
# English function words: a quoted English sentence or line holds some. An uncertain document is analysed
# segment by segment only when its first 4,000 characters hold at least ENGLISH_HINTS distinct ones (a set
# intersection in C instead of a fastText call per segment for every uncertain document). Words that are also
# common words of the registry's languages ("on", "me", "di") are not in the list.
ENGLISH_WORDS = frozenset(
    "the and of to is are was were you your we our for from with this that not have has will please can does "
    "don't i'm it's there what when which would could should they their been".split())
ENGLISH_HINTS = 2
# Quotations in straight, curly, guillemet and low-high double quotes, long enough to identify.
QUOTE_MIN_CHARS = 20
_QUOTATION = re.compile(r'"[^"\n]{%d,}?"|“[^”\n]{%d,}?”|«[^»\n]{%d,}?»|„[^“”\n]{%d,}?[“”]' % ((QUOTE_MIN_CHARS,) * 4))

CUES_FILE = Path(__file__).resolve().parents[1] / "config" / "lid_cues.yaml"
# Word cues decide between the two languages of a cue pair when the text holds at least this many distinct
# cues of one and more than of the other (Indonesian texts hold at most one Malaysian cue, and the reverse).
CUE_MIN_HITS = 2
_PUNCTUATION = ".,;:!?()[]{}\"'“”‘’«»-–—/"

DECIDED_BY_CUES = "word_cues"
DECIDED_BY_FASTTEXT = "fasttext"
DECIDED_BY_SEGMENTS = "segments"
DECIDED_BY_GAP = "fasttext_gap"
DECIDED_BY_SECOND = "second_opinion"


@dataclass(frozen=True)
class LidVerdict:
    """The language decision of one document, with what the audit trail records."""

    keep: bool
    reason: str | None
    decided_by: str
    second_lang: str | None = None
    second_score: float | None = None
    english_share: float | None = None  # measured for segmented documents only


def english_hints(text: str) -> bool:
    """Whether the first 2,000 characters hold ``ENGLISH_HINTS`` distinct English function words or more."""
    return len(ENGLISH_WORDS.intersection(text[:2_000].lower().split())) >= ENGLISH_HINTS


def segments(text: str) -> list[str]:
    """The pieces of ``text`` that mixed-language analysis identifies one by one: its lines, with quotations
    (an e-mail line, an error message or a tagline quoted in a sentence) apart from the sentence around them,
    and the sentences of pieces longer than ``LONG_LINE_CHARS``."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        for piece in _unquote(line):
            if len(piece) > LONG_LINE_CHARS:
                out += [s.strip() for s in _SENTENCE_END.split(piece) if s.strip()]
            else:
                out.append(piece)
    return out


def _unquote(line: str) -> list[str]:
    """``line`` cut around its quotations of ``QUOTE_MIN_CHARS`` or more (the quotation marks stay with the
    quotation)."""
    pieces: list[str] = []
    last = 0
    for match in _QUOTATION.finditer(line):
        before = line[last : match.start()].strip()
        if before:
            pieces.append(before)
        pieces.append(match.group(0))
        last = match.end()
    rest = line[last:].strip()
    if rest:
        pieces.append(rest)
    return pieces


@lru_cache(maxsize=4)
def load_cues(path: Path = CUES_FILE) -> dict[str, Mapping[str, frozenset[str]]]:
    """The cue words of the confusable pairs (``config/lid_cues.yaml``): language -> {other language: its
    cues, own: its own cues}, for each language of a pair."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    cues = {code: frozenset(w.lower() for w in words) for code, words in (data.get("cues") or {}).items()}
    out: dict[str, dict[str, frozenset[str]]] = {}
    for a, b in data.get("pairs") or ():
        if a not in cues or b not in cues:
            raise ValueError(f"{path}: pair {a}/{b} needs cue words for both")
        out.setdefault(a, {})[b] = cues[b]
        out.setdefault(b, {})[a] = cues[a]
        out[a]["own"], out[b]["own"] = cues[a], cues[b]
    return out


def cue_verdict(text: str, lang: str, other: str, cues: Mapping[str, Mapping[str, frozenset[str]]]) -> str | None:
    """``lang`` or ``other`` when the text's word cues decide between them, else None."""
    mine = cues.get(lang)
    if not mine or other not in mine:
        return None
    words = {w.strip(_PUNCTUATION) for w in text[:2_000].lower().split()}
    own, theirs = len(words & mine["own"]), len(words & mine[other])
    if theirs >= CUE_MIN_HITS and theirs > own:
        return other
    if own >= CUE_MIN_HITS and own > theirs:
        return lang
    return None


class LanguageJudge:
    """The decision of one partition's language for batches of documents (see the module docstring)."""

    def __init__(
        self,
        lang: Language,
        identifier: LanguageIdentifier,
        policy: LidPolicy = LidPolicy(),
        second: SecondOpinion | None = None,
        neighbours: Sequence[str] = (),
    ) -> None:
        """``neighbours``: the registry's other languages of ``lang``'s script and their confusable languages
        (always candidates of the second model)."""
        self.lang = lang
        self.identifier = identifier
        self.policy = policy
        self.second = second if policy.second_opinion and second is not None and second.supports(lang.code) else None
        self.confusable = frozenset(lang.lid_confusable)
        self.ask = self.confusable | {lang.code, ENGLISH}
        # The second model's candidates: the partition's family when fastText already names the partition's
        # language first, every language of the script the project knows otherwise.
        self.family = frozenset(self.ask)
        # Without English words in the text, the family without English (at least two languages to choose).
        self.family_only = self.family - {ENGLISH} if len(self.family - {ENGLISH}) >= 2 else self.family
        self.candidates = frozenset(self.ask | set(neighbours))
        cues = load_cues()
        self.cues = cues if lang.code in cues else {}
        self.cue_pairs = [c for c in self.confusable if c in self.cues.get(lang.code, {})]
        # Confusable languages the second model cannot name (Nepali and Lao for lingua): fastText decides them.
        self.gaps = frozenset(c for c in self.confusable if self.second is not None and not self.second.supports(c))

    def _sure_keep(self, p: LidPrediction) -> bool:
        return (
            p.lang == self.lang.code
            and p.score >= self.policy.sure_score
            and not (p.runner_up in self.confusable and p.runner_up_score >= self.policy.confusable_floor)
        )

    def _sure_drop(self, p: LidPrediction) -> bool:
        return p.lang not in self.ask and p.score >= self.policy.reject_score and p.runner_up != self.lang.code

    def judge(self, texts: Sequence[str], predictions: Sequence[LidPrediction]) -> list[LidVerdict]:
        """One verdict per text, given fastText's ``predictions`` of the whole texts."""
        if self.second is None:
            return [LidVerdict(*decide_language(p, self.lang, self.policy), DECIDED_BY_FASTTEXT) for p in predictions]
        verdicts: list[LidVerdict | None] = [None] * len(texts)
        uncertain: list[int] = []
        for i, p in enumerate(predictions):
            if self._sure_keep(p):
                verdicts[i] = LidVerdict(True, None, DECIDED_BY_FASTTEXT)
            elif self._sure_drop(p):
                verdicts[i] = LidVerdict(False, f"{LID_WRONG_LANGUAGE}:{p.lang}", DECIDED_BY_FASTTEXT)
            else:
                uncertain.append(i)
        if not uncertain:
            return verdicts  # type: ignore[return-value]
        judged = {i: texts[i] for i in uncertain}
        current = {i: predictions[i] for i in uncertain}
        shares: dict[int, float] = {}
        hints = {i: english_hints(texts[i]) for i in uncertain}
        if self.policy.mixed:
            self._set_aside_english(texts, uncertain, judged, current, shares, verdicts, hints)
        asked: list[int] = []
        for i in uncertain:
            if verdicts[i] is not None:
                continue
            p = current[i]
            gap = self._gap_language(p)
            if gap is not None:
                verdicts[i] = LidVerdict(False, f"{LID_WRONG_LANGUAGE}:{gap}", DECIDED_BY_GAP,
                                         english_share=shares.get(i))
            else:
                asked.append(i)
        code = self.lang.code
        groups: dict[frozenset[str], list[int]] = {}
        for i in asked:
            if not self._narrow(current[i]):
                candidates = self.candidates
            elif hints[i] if judged[i] is texts[i] else english_hints(judged[i]):
                candidates = self.family
            else:
                candidates = self.family_only
                # Between two varieties (no English in sight), clear word cues decide before lingua is asked:
                # they would overrule it anyway.
                cued = self._cued(judged[i], self.lang.code) if self.cue_pairs else None
                if cued is not None:
                    keep = cued == code
                    verdicts[i] = LidVerdict(keep, None if keep else f"{LID_WRONG_LANGUAGE}:{cued}", DECIDED_BY_CUES,
                                             english_share=shares.get(i))
                    continue
            groups.setdefault(candidates, []).append(i)
        for candidates, members in groups.items():
            varieties = candidates is not self.candidates and bool(self.cue_pairs)
            chars = None if varieties else self.policy.second_chars
            for i, s in zip(members, self.second.predict([judged[i] for i in members], candidates, chars)):
                score = round(s.score, 4)
                share = shares.get(i)
                cued = self._cued(judged[i], s.lang)
                if cued is not None:
                    keep = cued == code
                    verdict = LidVerdict(keep, None if keep else f"{LID_WRONG_LANGUAGE}:{cued}", DECIDED_BY_CUES,
                                         s.lang, score, share)
                elif s.lang == code and s.score >= self.policy.second_min_score:
                    verdict = LidVerdict(True, None, DECIDED_BY_SECOND, s.lang, score, share)
                elif s.lang == code:
                    verdict = LidVerdict(False, LID_LOW_SCORE, DECIDED_BY_SECOND, s.lang, score, share)
                else:
                    named = s.lang or current[i].lang
                    verdict = LidVerdict(False, f"{LID_WRONG_LANGUAGE}:{named}", DECIDED_BY_SECOND, s.lang, score,
                                         share)
                verdicts[i] = verdict
        return verdicts  # type: ignore[return-value]

    def _narrow(self, p: LidPrediction) -> bool:
        """Whether fastText names the partition's language first with some confidence: a score of
        ``reject_score`` or more, or ``narrow_lead`` times its runner-up's, or beside a confusable language.
        Then the second model checks it against the family only."""
        return p.lang == self.lang.code and (
            p.score >= self.policy.reject_score
            or p.runner_up in self.confusable
            or p.score >= self.policy.narrow_lead * p.runner_up_score)

    def _cued(self, text: str, second: str | None) -> str | None:
        """The language the word cues decide for, when the second model chose within a cue pair."""
        if not self.cue_pairs or second not in (self.lang.code, *self.cue_pairs):
            return None
        for other in self.cue_pairs:
            decided = cue_verdict(text, self.lang.code, other, self.cues)
            if decided is not None:
                return decided
        return None

    def warm(self) -> None:
        """Build the second model's detectors of this partition now (a worker does it when it starts)."""
        if self.second is not None:
            self.second.warm([self.family, self.family_only, self.candidates])

    def _gap_language(self, p: LidPrediction) -> str | None:
        """A language the second model does not know that fastText names: first with ``reject_score`` or
        more (Assamese for Bengali), or a confusable one of the partition (``self.gaps``) first or second with
        ``gap_score`` or more."""
        if p.lang != self.lang.code and p.score >= self.policy.reject_score and not self.second.supports(p.lang):
            return p.lang
        for code, score in ((p.lang, p.score), (p.runner_up, p.runner_up_score)):
            if code in self.gaps and score >= self.policy.gap_score:
                return code
        return None

    def _set_aside_english(self, texts, uncertain, judged, current, shares, verdicts, hints) -> None:
        """Rule 3a for the uncertain documents with several segments (one fastText batch for all)."""
        policy = self.policy
        pieces: list[str] = []
        owners: list[tuple[int, int]] = []  # (document, segment index)
        split: dict[int, list[str]] = {}
        for i in uncertain:
            if not hints[i]:
                continue  # no English to set aside
            parts = segments(texts[i])
            if len(parts) < 2:
                continue
            split[i] = parts
            for k, part in enumerate(parts):
                if len(part) >= policy.segment_min_chars:
                    pieces.append(part)
                    owners.append((i, k))
        if not pieces:
            return
        english: dict[int, set[int]] = {}
        identified: dict[int, int] = {}
        english_chars: dict[int, float] = {}
        for (i, k), p in zip(owners, self.identifier.predict(pieces, k=1)):
            size = len(split[i][k])
            identified[i] = identified.get(i, 0) + size
            if p.lang == ENGLISH and self.lang.code != ENGLISH:
                # Expected English characters: a segment counts by fastText's English probability, so a
                # sentence that is half English (an error message run into it) counts about half.
                english_chars[i] = english_chars.get(i, 0.0) + size * p.score
                if p.score >= policy.segment_english_score:
                    english.setdefault(i, set()).add(k)
        again: list[int] = []
        for i in split:
            if i not in identified:
                continue
            share = english_chars.get(i, 0) / identified[i]
            shares[i] = round(share, 4)
            if share > policy.max_english_share:
                verdicts[i] = LidVerdict(False, f"{LID_WRONG_LANGUAGE}:{ENGLISH}", DECIDED_BY_SEGMENTS,
                                         english_share=shares[i])
            elif i in english:
                judged[i] = "\n".join(s for k, s in enumerate(split[i]) if k not in english[i])
                again.append(i)
        if again:
            for i, p in zip(again, self.identifier.predict([judged[i] for i in again])):
                current[i] = p
                if self._sure_keep(p):
                    verdicts[i] = LidVerdict(True, None, DECIDED_BY_SEGMENTS, english_share=shares[i])


__all__ = ["LanguageJudge", "LidVerdict", "segments"]
