"""Word splitting for the scripts of the registry, with no dictionary and no new dependency.

The quality heuristics (word counts, mean word length, duplicated n-grams) and the MinHash shingles need
"words". Splitting on whitespace fails twice over in our languages:

* Python's ``\\w`` does not match combining marks, so ``re.findall(r"\\w+", "नमस्ते")`` cuts a Hindi word at
  every vowel sign and virama. Here a word character is any letter, mark or digit (Unicode categories L*, M*,
  N*) plus the zero-width (non-)joiners that Urdu and the Indic scripts use inside words.
* Thai and Lao write no spaces between words (Khmer and Myanmar neither, Chinese and Japanese neither). A
  dictionary segmenter (pythainlp's newmm) is one dependency and a large word list per language; for counting
  and shingling an approximation is enough, as long as it is deterministic and local (a small edit changes only
  the tokens near it, which is what MinHash needs). Runs of those scripts are cut into orthographic syllables
  with a few rules of the writing system (leading vowels start a syllable, a consonant carrying its own vowel
  starts one, a consonant after a vowel closes one). A Thai syllable is shorter than a Thai word (about 2.5
  against 4 characters), which the per-script quality defaults account for (core/quality.py).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Scripts written without spaces between words (ISO 15924). Runs of their characters are segmented
# whatever the document's declared script, so a Thai quotation inside a Vietnamese page is split too.
SCRIPTIO_CONTINUA = frozenset({"Thai", "Laoo", "Khmr", "Mymr", "Hani", "Hans", "Hant", "Hira", "Kana", "Jpan"})

# Joiners allowed inside a word: ZWNJ/ZWJ (Urdu, Persian, Indic conjunct control).
_JOINERS = "\u200c\u200d"
# Characters that join two word parts into one word when letters stand on both sides:
# apostrophes (Turkish "İstanbul'da", English "don't") and hyphens (Indonesian reduplication "anak-anak").
_INNER = "'\u2019\\-\u2010\u2011"

_SEGMENTED_RANGES = (
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1780-\u17ff\u19e0-\u19ff"  # Khmer, Khmer symbols
    "\u1000-\u109f\uaa60-\uaa7f\ua9e0-\ua9ff"  # Myanmar and its extensions
    "\u3040-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"  # Han
)
_HAS_SEGMENTED = re.compile(f"[{_SEGMENTED_RANGES}]")
_SEGMENTED_RUN = re.compile(f"[{_SEGMENTED_RANGES}]+")


@lru_cache(maxsize=1)
def _word_pattern() -> re.Pattern[str]:
    """Compile the word regex once: a class of every letter, mark and digit, joined by inner punctuation.

    Built from ``unicodedata`` (so it follows the interpreter's Unicode version) over the first two planes,
    which hold every script in use except the rare CJK extensions, added as one range. About 60 ms, once.
    """
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for cp in range(0x20000):
        is_word = unicodedata.category(chr(cp))[0] in "LMN"
        if is_word and start is None:
            start = cp
        elif not is_word and start is not None:
            ranges.append((start, cp - 1))
            start = None
    if start is not None:
        ranges.append((start, 0x1FFFF))
    ranges.append((0x20000, 0x3134F))  # CJK Unified Ideographs Extensions B-G (all letters)
    parts = [re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges]
    word_class = "[" + "".join(parts) + _JOINERS + "]"
    return re.compile(f"{word_class}+(?:[{_INNER}]{word_class}+)*")


def _is_script_code(script: str) -> bool:
    return len(script) == 4 and script[0].isupper() and script[1:].islower() and script.isalpha()


# --- Thai and Lao: orthographic syllables ---------------------------------------------------------------


class _SyllableTable:
    """The character classes of one Brahmic script without spaces (Thai or Lao)."""

    def __init__(
        self,
        consonants: str,
        leading_vowels: str,
        following_vowels: str,
        closing_vowels: str,
        vowel_marks: str,
        other_marks: str,
        repeat: str,
        onsets: frozenset[str],
        lead_vowel_parts: str,
        vowel_consonants: str,
        open_leading_vowels: str,
        silent_after_open: str,
    ) -> None:
        self.consonants = frozenset(consonants)
        self.leading_vowels = frozenset(leading_vowels)
        self.following_vowels = frozenset(following_vowels)
        self.closing_vowels = frozenset(closing_vowels)
        self.vowel_marks = frozenset(vowel_marks)
        self.marks = frozenset(vowel_marks + other_marks)
        self.repeat = frozenset(repeat)
        self.onsets = onsets  # two-consonant onsets, as two-character strings
        self.lead_vowel_parts = frozenset(lead_vowel_parts)
        self.vowel_consonants = frozenset(vowel_consonants)
        self.open_leading_vowels = frozenset(open_leading_vowels)
        self.silent_after_open = frozenset(silent_after_open)


def _chars(first: int, last: int) -> str:
    return "".join(chr(cp) for cp in range(first, last + 1))


def _pairs(firsts: str, seconds: str) -> frozenset[str]:
    return frozenset(a + b for a in firsts for b in seconds)


_THAI = _SyllableTable(
    consonants=_chars(0x0E01, 0x0E2E),
    leading_vowels=_chars(0x0E40, 0x0E44),  # เ แ โ ใ ไ are written before the consonant they follow
    following_vowels="\u0e30\u0e32\u0e33\u0e45",  # ะ า ำ ๅ
    closing_vowels="\u0e30\u0e33",  # ะ and ำ end a syllable; า may take a final consonant
    vowel_marks="\u0e31" + _chars(0x0E34, 0x0E3A),  # ั ิ ี ึ ื ุ ู ฺ
    other_marks=_chars(0x0E47, 0x0E4E),  # ็ tone marks ์ ํ ๎
    repeat="\u0e46",  # ๆ repeats the previous word
    # True clusters: a stop followed by ร ล ว is one onset (ประ, กลาง, ขวา); ห and อ lead sonorants (หนึ่ง, อยู่).
    onsets=_pairs("กขคตปพผบฟ", "รลว") | _pairs("ห", "งญนมยรลว") | {"อย", "ทร", "จร", "สร"},
    lead_vowel_parts="ยอวา",  # the second half of เ-ีย, เ-ือ, เ-า, แ-ว ...
    vowel_consonants="วอ",  # ว or อ between onset and final is the vowel -ua- or -o- (สวน, ควร, ชอบ)
    open_leading_vowels="ใไ",  # ใ- and ไ- spell open syllables
    silent_after_open="ย",  # ... except the silent ย of ไทย
)
_LAO = _SyllableTable(
    consonants=_chars(0x0E81, 0x0EAE) + "\u0edc\u0edd\u0ede\u0edf",
    leading_vowels=_chars(0x0EC0, 0x0EC4),
    following_vowels="\u0eb0\u0eb2\u0eb3",
    closing_vowels="\u0eb0\u0eb3",
    vowel_marks="\u0eb1" + _chars(0x0EB4, 0x0EBC),
    other_marks=_chars(0x0EC8, 0x0ECE),
    repeat="\u0ec6",
    onsets=_pairs("ກຂຄປພຜບ", "ຣລວ") | _pairs("ຫ", "ງຍນມຣລວ"),
    lead_vowel_parts="ຍອວາ",
    vowel_consonants="ວອ",
    open_leading_vowels="ໃໄ",
    silent_after_open="",
)


def _clusters(run: str, marks: frozenset[str]) -> list[str]:
    """Group each base character with the combining marks written on it."""
    out: list[str] = []
    for ch in run:
        if ch in marks and out:
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _opens(clusters: list[str], i: int, table: _SyllableTable) -> bool:
    """Whether the consonant cluster at ``i`` carries a vowel (a mark on it, or a following vowel after it)."""
    carries = any(m in table.vowel_marks for m in clusters[i][1:])
    return carries or (i + 1 < len(clusters) and clusters[i + 1][0] in table.following_vowels)


def _thai_like_syllables(run: str, table: _SyllableTable) -> list[str]:
    """Cut a run of Thai (or Lao) letters into approximate syllables. Deterministic and local."""
    clusters = _clusters(run, table.marks)
    out: list[str] = []
    cur: list[str] = []
    initial = ""  # the onset consonant of the current syllable ("" before it is seen)
    has_vowel = led = took_part = False

    def flush() -> None:
        nonlocal cur, initial, has_vowel, led, took_part
        if cur:
            out.append("".join(cur))
        cur, initial, has_vowel, led, took_part = [], "", False, False, False

    for i, cluster in enumerate(clusters):
        base = cluster[0]
        carries_vowel = any(m in table.vowel_marks for m in cluster[1:])
        nxt = clusters[i + 1][0] if i + 1 < len(clusters) else ""
        if base in table.leading_vowels:
            flush()
            cur, has_vowel, led = [cluster], True, True
        elif base in table.following_vowels:
            cur.append(cluster)
            has_vowel = True
            if base in table.closing_vowels:
                flush()
        elif base in table.repeat:
            if cur:
                cur.append(cluster)
            elif out:
                out[-1] += cluster
            else:
                cur.append(cluster)
        elif base in table.consonants:
            starts_own = (
                carries_vowel
                or nxt in table.following_vowels
                or (base + nxt in table.onsets and _opens(clusters, i + 1, table))
            )
            if not cur:
                cur, initial, has_vowel = [cluster], base, carries_vowel
            elif not initial:  # the onset after a leading vowel
                cur.append(cluster)
                initial = base
            elif (
                len(cur) == (2 if led else 1)
                and initial + base in table.onsets
                and not (has_vowel and not led)
                and not any(m in table.vowel_marks for m in cur[-1][1:])
            ):
                cur.append(cluster)  # a two-consonant onset
                has_vowel = has_vowel or carries_vowel
            elif led and not took_part and base in table.lead_vowel_parts and not starts_own:
                cur.append(cluster)  # second half of a split vowel
                took_part = True
            elif not has_vowel and not took_part and base in table.vowel_consonants and not starts_own:
                cur.append(cluster)  # a consonant letter used as the vowel (the ว of สวน, หลวง)
                took_part = has_vowel = True
            elif led and cur[0][0] in table.open_leading_vowels and base not in table.silent_after_open:
                flush()  # ใ- and ไ- syllables take no final consonant: this one starts the next syllable
                cur, initial, has_vowel = [cluster], base, carries_vowel
            elif starts_own:
                flush()
                cur, initial, has_vowel = [cluster], base, carries_vowel
            else:  # a final consonant (or an inherent-vowel syllable such as คน) closes the syllable
                cur.append(cluster)
                flush()
        else:  # digits and signs inside the run (๑, ฯ): a token of their own
            flush()
            out.append(cluster)
    flush()
    return out


# --- Khmer, Myanmar, Han, Kana ---------------------------------------------------------------------------

_KHMER_BASE = frozenset(_chars(0x1780, 0x17B3))  # consonants and independent vowels
_KHMER_COENG = "\u17d2"  # the sign that stacks the next consonant under the previous one
_MYANMAR_BASE = frozenset(_chars(0x1000, 0x102A) + _chars(0x103F, 0x1040))
_MYANMAR_STACKER = "\u1039"  # virama: the next consonant is stacked
_MYANMAR_ASAT = "\u103a"  # killer: the consonant is a final of the previous syllable


def _khmer_syllables(run: str) -> list[str]:
    """A syllable starts at each base letter that is not stacked under the previous one (after COENG)."""
    out: list[str] = []
    for i, ch in enumerate(run):
        if ch in _KHMER_BASE and out and run[i - 1] != _KHMER_COENG:
            out.append(ch)
        elif out:
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _myanmar_syllables(run: str) -> list[str]:
    """A syllable starts at each consonant that is neither stacked (after virama) nor killed (before asat)."""
    out: list[str] = []
    for i, ch in enumerate(run):
        stacked = i > 0 and run[i - 1] == _MYANMAR_STACKER
        killed = i + 1 < len(run) and run[i + 1] == _MYANMAR_ASAT
        if ch in _MYANMAR_BASE and out and not stacked and not killed:
            out.append(ch)
        elif out:
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _segment_run(run: str) -> list[str]:
    """Split a run of characters from the space-less scripts, one script block at a time."""
    pieces: list[str] = []
    for block in re.finditer(
        "([\u0e00-\u0e7f]+)|([\u0e80-\u0eff]+)|([\u1780-\u17ff\u19e0-\u19ff]+)|([\u1000-\u109f\uaa60-\uaa7f\ua9e0-\ua9ff]+)"
        "|([\u3040-\u30ff\u31f0-\u31ff]+)|(.)",
        run,
    ):
        thai, lao, khmer, myanmar, kana, other = block.groups()
        if thai:
            pieces += _thai_like_syllables(thai, _THAI)
        elif lao:
            pieces += _thai_like_syllables(lao, _LAO)
        elif khmer:
            pieces += _khmer_syllables(khmer)
        elif myanmar:
            pieces += _myanmar_syllables(myanmar)
        elif kana:
            pieces.append(kana)  # a kana run is usually one word or one inflection
        else:
            pieces.append(other)  # one Han character, one token
    return pieces


def split_words(text: str, script: str | None = None) -> list[str]:
    """Split ``text`` into words: letters, marks and digits kept together, punctuation and symbols dropped.

    ``script`` is the document's ISO 15924 script (``Latn``, ``Deva``, ``Thai`` ...). It is a hint, checked for
    form: runs of the space-less scripts (Thai, Lao, Khmer, Myanmar, Han, Kana) are split into syllables
    wherever they occur, and every other script is split at non-word characters.
    """
    if script is not None and not _is_script_code(script):
        raise ValueError(f"script must be an ISO 15924 code like 'Latn' or 'Thai', got {script!r}")
    tokens = _word_pattern().findall(text)
    if script not in SCRIPTIO_CONTINUA and not _HAS_SEGMENTED.search(text):
        return tokens
    words: list[str] = []
    for token in tokens:
        if not _HAS_SEGMENTED.search(token):
            words.append(token)
            continue
        last = 0
        for run in _SEGMENTED_RUN.finditer(token):
            if run.start() > last:
                words.append(token[last : run.start()])
            words += _segment_run(run.group())
            last = run.end()
        if last < len(token):
            words.append(token[last:])
    return words


def word_count(text: str, script: str | None = None) -> int:
    """The number of words :func:`split_words` finds."""
    return len(split_words(text, script))


__all__ = ["SCRIPTIO_CONTINUA", "split_words", "word_count"]
