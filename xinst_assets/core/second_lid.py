"""The second-opinion language identifier: lingua (``lingua-language-detector``), restricted per call to the
candidate languages that matter for a document.

lid.176 is fast but weak where xinst needs it most: it gives clean Swahili 0.2-0.3, splits Indonesian and
Malay about evenly, and puts Malay first as Indonesian. lingua carries its n-gram models in its wheel
(offline, Apache-2.0), tells those pairs apart, and is accurate on short text; restricted to a few candidate
languages it costs about half a millisecond per document, so only the documents fastText is unsure about pay
for it (see :mod:`xinst_assets.core.lid_decision` for the rule).

Coverage: lingua knows the ten registry languages and Malay, Estonian, Marathi, Persian, Zulu, Azerbaijani and
English, but not Nepali or Lao; for those the decision trusts fastText (which knows both), see
``LidPolicy.gap_score``. A registry language lingua does not know is decided by fastText alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any, Iterable, Sequence

INSTALL_HINT = "pip install 'lingua-language-detector>=2.1,<3'"
# lingua's cost grows with the text (and the candidates) while its answer settles early: the first 600
# characters decide. Indonesian and Malay need that much (on the packaged sample's Indonesian texts, 300
# characters gave 5 of 44 as Malay, 600 one).
DEFAULT_MAX_CHARS = 600


@dataclass(frozen=True)
class SecondPrediction:
    """lingua's best language among the candidates and its confidence (the candidates' values sum to 1)."""

    lang: str | None
    score: float
    runner_up: str | None = None
    runner_up_score: float = 0.0


def _lingua() -> Any:
    try:
        import lingua
    except ImportError as exc:  # a clear error instead of a bare ImportError deep in a worker
        raise ImportError(f"the second-opinion language ID needs lingua: {INSTALL_HINT}") from exc
    return lingua


@lru_cache(maxsize=1)
def _language_table() -> tuple[dict[str, Any], dict[Any, str]]:
    """ISO 639-1 (or 639-3 where a language has no 639-1) code -> lingua Language, and back."""
    lingua = _lingua()
    by_code: dict[str, Any] = {}
    back: dict[Any, str] = {}
    for language in lingua.Language.all():
        code1 = language.iso_code_639_1.name.lower()
        code3 = language.iso_code_639_3.name.lower()
        by_code[code1] = language
        by_code.setdefault(code3, language)
        back[language] = code1
    return by_code, back


class SecondOpinion:
    """lingua detectors restricted to candidate sets, built once per set and kept for the process's life (a
    screening worker builds each of its languages' detectors once, not per batch)."""

    def __init__(self, max_chars: int | None = DEFAULT_MAX_CHARS, low_accuracy: bool = True) -> None:
        """``low_accuracy``: lingua's trigram models only (45 MB for the registry's candidates instead of 320 MB,
        a detector built in 0.2 s instead of 5 s; as accurate on the 600 characters it reads, and less so on a
        line of a few words, which the filter's length rules drop anyway)."""
        self.lingua = _lingua()
        self.max_chars = max_chars
        self.low_accuracy = low_accuracy
        self._detectors: dict[frozenset[str], Any] = {}

    @property
    def fingerprint(self) -> str:
        """Identifies the model and how it is called: a change re-screens documents."""
        try:
            version = metadata.version("lingua-language-detector")
        except metadata.PackageNotFoundError:
            version = "unknown"
        mode = "low" if self.low_accuracy else "high"
        return f"lingua-language-detector {version}, {mode} accuracy, first {self.max_chars} characters"

    def supports(self, code: str) -> bool:
        """Whether lingua knows the language of registry code ``code``."""
        return code in _language_table()[0]

    def _detector(self, codes: frozenset[str]) -> Any:
        detector = self._detectors.get(codes)
        if detector is None:
            table = _language_table()[0]
            languages = [table[c] for c in sorted(codes)]
            builder = self.lingua.LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models()
            if self.low_accuracy:
                builder = builder.with_low_accuracy_mode()
            detector = self._detectors[codes] = builder.build()
        return detector

    def warm(self, candidate_sets: Iterable[Iterable[str]]) -> None:
        """Build the detectors of these candidate sets now (a worker does it when it starts)."""
        for codes in candidate_sets:
            supported = frozenset(c for c in codes if self.supports(c))
            if len(supported) >= 2:
                self._detector(supported)

    def predict(
        self, texts: Sequence[str], candidates: Iterable[str], max_chars: int | None = None
    ) -> list[SecondPrediction]:
        """The best of ``candidates`` (registry codes; those lingua does not know are left out) for each
        text, read up to ``max_chars`` (default: the model's). With fewer than two known candidates there is
        nothing to choose: ``lang`` is that one (or None)."""
        supported = frozenset(c for c in candidates if self.supports(c))
        if len(supported) < 2:
            only = next(iter(supported), None)
            return [SecondPrediction(only, 1.0 if only else 0.0) for _ in texts]
        detector = self._detector(supported)
        back = _language_table()[1]
        out = []
        limit = max_chars or self.max_chars
        for text in texts:
            if limit is not None:
                text = text[:limit]
            values = detector.compute_language_confidence_values(text)
            if not values or values[0].value <= 0.0:
                out.append(SecondPrediction(None, 0.0))
                continue
            second = values[1] if len(values) > 1 else None
            out.append(SecondPrediction(back[values[0].language], float(values[0].value),
                                        back[second.language] if second else None,
                                        float(second.value) if second else 0.0))
        return out


@lru_cache(maxsize=2)
def default_second_opinion(max_chars: int | None = DEFAULT_MAX_CHARS) -> SecondOpinion:
    """This process's second-opinion model (one per process: detectors are built once and kept)."""
    return SecondOpinion(max_chars)


__all__ = ["DEFAULT_MAX_CHARS", "INSTALL_HINT", "SecondOpinion", "SecondPrediction", "default_second_opinion"]
