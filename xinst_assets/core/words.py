"""Word splitting for the scripts of the registry, with no dictionary and no new dependency.

The quality heuristics (word counts, mean word length, duplicated n-grams) and the MinHash shingles need
"words". Splitting on whitespace fails twice over in our languages:

* Python's ``\\w`` does not match combining marks, so ``re.findall(r"\\w+", "नमस्ते")`` cuts a Hindi word at
  every vowel sign and virama. Here a word character is any letter, mark or digit (Unicode categories L*, M*,
  N*) plus the zero-width (non-)joiners that Urdu and the Indic scripts use inside words.
* Thai and Lao write no spaces between words (Khmer and Myanmar neither, Chinese and Japanese neither). A
  dictionary segmenter (pythainlp's newmm) is one dependency and a large word list per language; for counting
  and shingling an approximation is enough, as long as it is deterministic and local (a small edit changes
  only the tokens near it, which is what MinHash needs). Runs of those scripts are cut into orthographic
  syllables with a few rules of the writing system (leading vowels start a syllable, a consonant carrying its
  own vowel starts one, a consonant after a vowel closes one). A Thai syllable (3 characters on average over
  the Thai sample) is shorter than a Thai word, which the per-script quality defaults account for
  (core/quality.py).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Scripts written without spaces between words (ISO 15924). Runs of their characters are segmented
# whatever the document's declared script, so a Thai quotation inside a Vietnamese page is split too.
SCRIPTIO_CONTINUA = frozenset(
    {"Thai", "Laoo", "Khmr", "Mymr", "Hani", "Hans", "Hant", "Hira", "Kana", "Jpan"}
)

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


def _word_class(first: int, last: int) -> str:
    """A regex character-class body: every letter, mark and digit (categories L*, M*, N*) in a range."""
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for cp in range(first, last + 1):
        is_word = unicodedata.category(chr(cp))[0] in "LMN"
        if is_word and start is None:
            start = cp
        elif not is_word and start is not None:
            ranges.append((start, cp - 1))
            start = None
    if start is not None:
        ranges.append((start, last))
    return "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges
    )


def _words_regex(word_class: str) -> re.Pattern[str]:
    return re.compile(f"{word_class}+(?:[{_INNER}]{word_class}+)*")


@lru_cache(maxsize=1)
def _word_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The word regexes, compiled once from ``unicodedata`` (they follow the interpreter's Unicode version).

    Two of them, because ``re`` matches a class of Basic Multilingual Plane characters with a bitmap but scans
    a class that reaches beyond it range by range (10x slower): the fast one serves texts without characters
    beyond U+FFFF, the full one (adding the supplementary planes and the CJK extensions) the others.
    """
    bmp = _word_class(0, 0xFFFF) + _JOINERS
    supplementary = _word_class(0x10000, 0x1FFFF) + "\U00020000-\U0003134f"  # CJK Ext. B-G are all letters
    return _words_regex(f"[{bmp}]"), _words_regex(f"[{bmp}{supplementary}]")


_BEYOND_BMP = re.compile("[\U00010000-\U0010ffff]")


def _is_script_code(script: str) -> bool:
    return len(script) == 4 and script[0].isupper() and script[1:].islower() and script.isalpha()


# --- Thai and Lao: orthographic syllables ---------------------------------------------------------------


def _chars(first: int, last: int) -> str:
    return "".join(chr(cp) for cp in range(first, last + 1))


def _pairs(firsts: str, seconds: str) -> frozenset[str]:
    return frozenset(a + b for a in firsts for b in seconds)


def _cls(chars: str | frozenset[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


def _syllable_regex(
    consonants: str,
    leading_vowels: str,
    open_leading_vowels: str,
    silent_after_open: str,
    following_vowels: str,
    closing_vowels: str,
    vowel_marks: str,
    other_marks: str,
    repeat: str,
    onsets: frozenset[str],
    lead_vowel_parts: str,
    vowel_consonants: str,
) -> re.Pattern[str]:
    """The orthographic syllable of a Brahmic script written without spaces (Thai, Lao), as one regex.

    A syllable is, in order of the alternatives:
      * an open leading vowel (ใ ไ) + onset + marks (+ a silent ย, as in ไทย): these spell open syllables;
      * another leading vowel + onset + marks (+ the second half of a split vowel, the ย of เ-ีย) + tail;
      * an onset carrying a vowel mark + tail;
      * an onset (+ a consonant letter used as the vowel, the อ of ชอบ) + tail;
    where the onset is one consonant or a true cluster (ปร, หน), and the tail is an optional following vowel
    and an optional final consonant. A consonant is a final only when it does not open a syllable itself (it
    carries no vowel mark, no following vowel comes after it, and it does not start a cluster that does).
    Any other character (digits, signs) is a token of its own. The regex engine does the scanning in C,
    about twice as fast as the same rules as a Python state machine.
    """
    c, vm, om = _cls(consonants), _cls(vowel_marks), _cls(other_marks)
    m, f = _cls(vowel_marks + other_marks), _cls(following_vowels)
    onset = "(?:" + "|".join(sorted(onsets)) + f"|{c})"
    opens = f"(?:{om}*{vm}|{m}*{f})"
    final = f"(?:(?!(?:{'|'.join(sorted(onsets))}){opens}){c}(?!{opens}){om}*)"
    long_vowels = "".join(sorted(set(following_vowels) - set(closing_vowels)))
    tail = f"(?:{_cls(closing_vowels)}|{_cls(long_vowels)}(?:{_cls(closing_vowels)}|{final})?|{final})?"
    rep = f"{_cls(repeat)}*"
    silent = f"(?:{_cls(silent_after_open)}(?!{m}|{f}))?" if silent_after_open else ""
    other_leading = "".join(sorted(set(leading_vowels) - set(open_leading_vowels)))
    parts = "".join(sorted(set(lead_vowel_parts) - set(following_vowels)))
    return re.compile(
        f"{_cls(open_leading_vowels)}{onset}{m}*{silent}{rep}"
        f"|{_cls(other_leading)}{onset}{m}*(?:{_cls(parts)}(?!{m}|{f}))?{tail}{rep}"
        f"|{onset}{om}*{vm}{m}*{tail}{rep}"
        f"|{onset}{om}*(?:{_cls(vowel_consonants)}(?!{m}|{f}))?{tail}{rep}"
        "|.",
        re.DOTALL,
    )


_THAI_SYLLABLE = _syllable_regex(
    consonants=_chars(0x0E01, 0x0E2E),
    leading_vowels=_chars(0x0E40, 0x0E44),  # เ แ โ ใ ไ are written before the consonant they follow
    open_leading_vowels="ใไ",  # ใ- and ไ- spell open syllables ...
    silent_after_open="ย",  # ... except the silent ย of ไทย
    following_vowels="\u0e30\u0e32\u0e33\u0e45",  # ะ า ำ ๅ
    closing_vowels="\u0e30\u0e33",  # ะ and ำ end a syllable; า may take a final consonant
    vowel_marks="\u0e31" + _chars(0x0E34, 0x0E3A),  # ั ิ ี ึ ื ุ ู ฺ
    other_marks=_chars(0x0E47, 0x0E4E),  # ็ tone marks ์ ํ ๎
    repeat="\u0e46",  # ๆ repeats the previous word
    # True clusters: a stop followed by ร ล ว is one onset (ประ, กลาง, ขวา);
    # ห and อ lead sonorants (หนึ่ง, อยู่).
    onsets=_pairs("กขคตปพผบฟ", "รลว") | _pairs("ห", "งญนมยรลว") | {"อย", "ทร", "จร", "สร"},
    lead_vowel_parts="ยอว",  # the second half of เ-ีย, เ-ือ, แ-ว ...
    vowel_consonants="วอ",  # ว or อ between onset and final is the vowel -ua- or -o- (สวน, ควร, ชอบ)
)
_LAO_SYLLABLE = _syllable_regex(
    consonants=_chars(0x0E81, 0x0EAE) + "\u0edc\u0edd\u0ede\u0edf",
    leading_vowels=_chars(0x0EC0, 0x0EC4),
    open_leading_vowels="ໃໄ",
    silent_after_open="",
    following_vowels="\u0eb0\u0eb2\u0eb3",
    closing_vowels="\u0eb0\u0eb3",
    vowel_marks="\u0eb1" + _chars(0x0EB4, 0x0EBC),
    other_marks=_chars(0x0EC8, 0x0ECE),
    repeat="\u0ec6",
    onsets=_pairs("ກຂຄປພຜບ", "ຣລວ") | _pairs("ຫ", "ງຍນມຣລວ"),
    lead_vowel_parts="ຍອວ",
    vowel_consonants="ວອ",
)


# --- Khmer, Myanmar, Han, Kana ---------------------------------------------------------------------------

_KHMER_BASE = frozenset(_chars(0x1780, 0x17B3))  # consonants and independent vowels
_KHMER_COENG = "\u17d2"  # the sign that stacks the next consonant under the previous one
_KHMER_DEPENDENT = frozenset(_chars(0x17B6, 0x17C5))  # dependent vowel signs
_MYANMAR_BASE = frozenset(_chars(0x1000, 0x102A) + _chars(0x103F, 0x1040))
_MYANMAR_STACKER = "\u1039"  # virama: the next consonant is stacked
_MYANMAR_ASAT = "\u103a"  # killer: the consonant is a final of the previous syllable


def _khmer_syllables(run: str) -> list[str]:
    """A syllable starts at a base letter, unless stacked (after COENG) or closing the syllable before it.

    A bare consonant after a syllable that has its vowel sign, and followed by no vowel sign of its own, is
    that syllable's final consonant (the រ of ខ្មែរ).
    """
    out: list[str] = []
    has_vowel = has_final = False
    for i, ch in enumerate(run):
        nxt = run[i + 1] if i + 1 < len(run) else ""
        if ch in _KHMER_BASE and out and run[i - 1] != _KHMER_COENG:
            if has_vowel and not has_final and nxt not in _KHMER_DEPENDENT and nxt != _KHMER_COENG:
                out[-1] += ch
                has_final = True
            else:
                out.append(ch)
                has_vowel = has_final = False
        elif out:
            out[-1] += ch
            has_vowel = has_vowel or ch in _KHMER_DEPENDENT
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
        "([\u0e00-\u0e7f]+)|([\u0e80-\u0eff]+)|([\u1780-\u17ff\u19e0-\u19ff]+)"
        "|([\u1000-\u109f\uaa60-\uaa7f\ua9e0-\ua9ff]+)"
        "|([\u3040-\u30ff\u31f0-\u31ff]+)|(.)",
        run,
    ):
        thai, lao, khmer, myanmar, kana, other = block.groups()
        if thai:
            pieces += _THAI_SYLLABLE.findall(thai)
        elif lao:
            pieces += _LAO_SYLLABLE.findall(lao)
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

    ``script`` is the document's ISO 15924 script (``Latn``, ``Deva``, ``Thai`` ...). It is a hint, checked
    for form: runs of the space-less scripts (Thai, Lao, Khmer, Myanmar, Han, Kana) are split into syllables
    wherever they occur, and every other script is split at non-word characters.
    """
    if script is not None and not _is_script_code(script):
        raise ValueError(f"script must be an ISO 15924 code like 'Latn' or 'Thai', got {script!r}")
    fast, full = _word_patterns()
    tokens = (full if _BEYOND_BMP.search(text) else fast).findall(text)
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
