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

import hashlib
import os
import re
import unicodedata
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

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


def _cluster_pattern(onsets: frozenset[str]) -> str:
    """The two-letter onsets as one regex: a class of first letters then a class of second letters per group.

    Equivalent to the alternation of the pairs (at one position at most one pair can match, so the order of
    the alternatives changes nothing), but the regex engine tests a few classes instead of every pair.
    """
    if any(len(pair) != 2 for pair in onsets):
        raise ValueError("onset clusters are two letters each")
    seconds: dict[str, set[str]] = {}
    for pair in onsets:
        seconds.setdefault(pair[0], set()).add(pair[1])
    groups: dict[frozenset[str], list[str]] = {}
    for first, following in seconds.items():
        groups.setdefault(frozenset(following), []).append(first)
    alternatives = sorted(f"{_cls(firsts)}{_cls(following)}" for following, firsts in groups.items())
    return "(?:" + "|".join(alternatives) + ")"


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
    clusters = _cluster_pattern(onsets)
    onset = f"(?:{clusters}|{c})"
    opens = f"(?:{om}*{vm}|{m}*{f})"
    final = f"(?:(?!{clusters}{opens}){c}(?!{opens}){om}*)"
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


def _split_segmented_token(token: str) -> list[str]:
    """Split one word token that holds characters of the space-less scripts (see :func:`split_words`)."""
    words: list[str] = []
    last = 0
    for run in _SEGMENTED_RUN.finditer(token):
        if run.start() > last:
            words.append(token[last : run.start()])
        words += _segment_run(run.group())
        last = run.end()
    if last < len(token):
        words.append(token[last:])
    return words


def split_words(text: str, script: str | None = None) -> list[str]:
    """Split ``text`` into words: letters, marks and digits kept together, punctuation and symbols dropped.

    ``script`` is the document's ISO 15924 script (``Latn``, ``Deva``, ``Thai`` ...). It is a hint, checked
    for form: runs of the space-less scripts (Thai, Lao, Khmer, Myanmar, Han, Kana) are split into syllables
    wherever they occur, and every other script is split at non-word characters. :class:`TextBatch` splits
    many texts at once into the same words.
    """
    if script is not None and not _is_script_code(script):
        raise ValueError(f"script must be an ISO 15924 code like 'Latn' or 'Thai', got {script!r}")
    fast, full = _word_patterns()
    tokens = (full if _BEYOND_BMP.search(text) else fast).findall(text)
    if script not in SCRIPTIO_CONTINUA and not _HAS_SEGMENTED.search(text):
        return tokens
    words: list[str] = []
    for token in tokens:
        if _HAS_SEGMENTED.search(token):
            words += _split_segmented_token(token)
        else:
            words.append(token)
    return words


# --- Many texts at once ------------------------------------------------------------------------------
#
# The filter splits every document into words once and shares them between the quality rules and the MinHash
# shingles. Python's regex engine costs about 0.4 us a word; here a whole batch of texts becomes one array of
# code points, and a table lookup per code point (numpy) finds the same tokens as the regexes above. Only the
# tokens with characters of the space-less scripts go through the syllable rules, one token at a time.

# Bits of the per-code-point table.
WORD = 1  # a word character of the word regex (letters, marks, digits, joiners)
INNER = 2  # joins two word parts when a word character stands on each side
SEGMENTED = 4  # a character of the space-less scripts
SPACE = 8  # str.isspace(): separates whitespace tokens
ALPHA = 16  # \w but not a digit or "_": a whitespace token holding one is "alphabetic" (quality rules)
SHINGLE_UNSAFE = 32  # see _shingle_unsafe(): a text with one is shingled the slow way
MARK = 64  # a combining mark (canonical combining class above 0)
# For an exact vectorised "is this text NFC?" (TextBatch.nfc):
NFC_NO = 128  # NFC replaces the character (it never occurs in NFC text)
NFC_MAYBE = 256  # the second character of a canonical composition (or a Hangul vowel or final jamo)
NFC_DECOMPOSES = 512  # has a canonical decomposition (NFC may take it apart before composing again)
NFC_HANGUL = 1024  # a Hangul jamo that composes algorithmically (no decomposition in the tables)
_CODE_POINTS = 0x110000
_NFC_BACK = 8  # combining marks looked through to find the starter of a composable character
# The separator of the joined batch: whitespace and no word character, so no token spans two texts.
_SEPARATOR = "\n"
_SEPARATOR_THAI = "\x00"  # between Thai tokens given to the syllable regex together


def _runs(pattern: str, text: str, out: np.ndarray, bit: int) -> None:
    for match in re.finditer(pattern, text):
        out[match.start() : match.end()] |= bit


class CharTables(NamedTuple):
    """Per-code-point tables, indexed by code point."""

    flags: np.ndarray  # uint16: the bits above
    ccc: np.ndarray  # uint8: the canonical combining class
    lower: np.ndarray  # uint32: the first character of the code point's lower case
    compositions: np.ndarray  # int64, sorted: (first << 21) | second of every canonical composition pair


CHAR_TABLES_CACHE_ENV = "XINST_TABLES_CACHE"  # where built tables are kept (default: ~/.cache/xinst/char-tables)


@lru_cache(maxsize=1)
def char_tables() -> CharTables:
    """The per-code-point tables, once per process: loaded from the user's cache folder (milliseconds) or
    built from ``unicodedata`` (about a second of CPU, which every run process would otherwise pay) and saved
    there. The file is keyed by the Unicode version and this module's source, so a change of either builds
    the tables again."""
    from xinst_assets.core.user_cache import private_cache_dir

    folder = private_cache_dir("char-tables", CHAR_TABLES_CACHE_ENV)
    path = folder / f"{_char_tables_key()}.npz" if folder is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                tables = CharTables(**{name: stored[name] for name in CharTables._fields})
            if all(len(table) == _CODE_POINTS for table in tables[:3]):
                return tables
        except (OSError, ValueError, KeyError):  # unreadable or from an older layout: built again below
            pass
    tables = build_char_tables()
    if path is not None:
        partial = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        try:
            np.savez(partial, **tables._asdict())
            os.replace(partial, path)
        except OSError:
            partial.unlink(missing_ok=True)
    return tables


def _char_tables_key() -> str:
    digest = hashlib.sha256(f"{unicodedata.unidata_version}\0{np.__version__}\0".encode())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:24]


def build_char_tables() -> CharTables:
    """The per-code-point tables, built from ``unicodedata``.

    Word characters are defined as in the regexes of :func:`split_words`: letters, marks and digits below
    U+20000 (the supplementary planes included), the CJK extensions U+20000-U+3134F, and the joiners.
    """
    flags = np.zeros(_CODE_POINTS, dtype=np.uint16)
    category = [unicodedata.category(chr(cp))[0] for cp in range(0x20000)]
    flags[:0x20000][np.array([c in "LMN" for c in category])] |= WORD
    flags[0x20000:0x31350] |= WORD
    for ch in _JOINERS:
        flags[ord(ch)] |= WORD
    for ch in _INNER.replace("\\", ""):
        flags[ord(ch)] |= INNER
    # Every code point as one string, built from an array (a join of 1.1M one-character strings costs 80 MB).
    everything = np.arange(_CODE_POINTS, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")
    _runs(f"[{_SEGMENTED_RANGES}]+", everything, flags, SEGMENTED)
    # The regex classes are exactly the ones the rules use: \s (str.isspace), \w and \d.
    _runs(r"\s+", everything, flags, SPACE)
    alpha = np.zeros(_CODE_POINTS, dtype=np.uint8)
    _runs(r"\w+", everything, alpha, ALPHA)
    digits = np.zeros(_CODE_POINTS, dtype=np.uint8)
    _runs(r"[\d_]+", everything, digits, ALPHA)
    flags |= alpha & ~digits
    ccc = np.zeros(_CODE_POINTS, dtype=np.uint8)
    for cp in range(0x20000):
        value = unicodedata.combining(chr(cp))
        if value:
            ccc[cp] = value
    lower = np.arange(_CODE_POINTS, dtype=np.uint32)
    lowered: dict[int, str] = {}
    for cp in range(_CODE_POINTS):
        low = everything[cp].lower()
        if low != everything[cp]:
            lowered[cp] = low
            lower[cp] = ord(low[0])
    for cp in _shingle_unsafe(flags, ccc, lowered):
        flags[cp] |= SHINGLE_UNSAFE
    flags[ccc > 0] |= MARK
    nfc = flags  # the NFC bits live in the same table
    pairs: list[int] = []
    for cp in range(_CODE_POINTS):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = everything[cp]
        mapping = unicodedata.decomposition(ch) if cp < 0x30000 else ""
        if mapping and not mapping.startswith("<"):
            nfc[cp] |= NFC_DECOMPOSES
            parts = [int(h, 16) for h in mapping.split()]
            if len(parts) == 2 and unicodedata.normalize("NFC", ch) == ch:
                pairs.append(parts[0] << 21 | parts[1])
                nfc[parts[1]] |= NFC_MAYBE
        if unicodedata.normalize("NFC", ch) != ch:
            nfc[cp] |= NFC_NO
    nfc[0x1161:0x1176] |= NFC_MAYBE | NFC_HANGUL  # vowel jamo: L + V composes to an LV syllable
    nfc[0x11A8:0x11C3] |= NFC_MAYBE | NFC_HANGUL  # final jamo: LV + T composes to an LVT syllable
    return CharTables(flags, ccc, lower, np.array(sorted(pairs), dtype=np.int64))


def _shingle_unsafe(flags: np.ndarray, ccc: np.ndarray, lowered: dict[int, str]) -> set[int]:
    """Characters that may split differently once the text is NFC-normalised and lower-cased.

    MinHash shingles are the words of ``normalise(text).lower()``; the quality rules use the words of the raw
    text. For a text without these characters, the first are exactly the second, each NFC-normalised and
    lower-cased: NFC then only composes, decomposes and reorders word characters among themselves (marks
    with their base), which changes no boundary between a word and what surrounds it, and lower-casing maps
    each character to characters of the same kind. Excluded:

    * a character whose lower case holds a character of another kind (word, inner, segmented) or which
      is inner or segmented itself, and Greek capital sigma (its lower case depends on what follows), plus
      every character NFC can build such a character from;
    * the non-word characters of a canonical composition (``¨`` + U+0301 is ``΅``; for ``=`` + U+0338,
      ``≠``, the non-ASCII ones), every non-ASCII character of one in the space-less scripts (their
      syllable rules look at exact characters), and a character that NFC replaces by characters of another
      kind or of those scripts;
    * a non-word character with a combining class (canonical reordering would move it across a word
      boundary); reordering within the space-less scripts is caught per text
      (:attr:`TextBatch.shingle_safe`).
    """
    kind_bits = WORD | INNER | SEGMENTED

    def kind(cp: int) -> int:
        return int(flags[cp]) & kind_bits

    lower_unsafe = {0x03A3}
    for cp, low in lowered.items():
        if kind(cp) & (INNER | SEGMENTED) or any(kind(ord(x)) != kind(cp) for x in low):
            lower_unsafe.add(cp)
    unsafe = set(np.flatnonzero((ccc > 0) & ((flags & WORD) == 0)).tolist())
    compositions = []  # (character, its canonical decomposition, its NFC form), as code points
    for cp in range(0x30000):
        mapping = unicodedata.decomposition(chr(cp))
        if mapping and not mapping.startswith("<"):
            nfc = [ord(x) for x in unicodedata.normalize("NFC", chr(cp))]
            compositions.append((cp, [int(h, 16) for h in mapping.split()], nfc))
    for cp, parts, nfc in compositions:
        involved = [cp, *parts, *nfc]
        segmented = any(flags[x] & SEGMENTED for x in involved)
        if nfc == [cp]:
            # A composition: its parts become ``cp``. When a non-word character takes part, excluding it
            # (and the composite) is enough, as a composition needs all its parts; ASCII is never a
            # composite, and rather than ``=`` (common) the U+0338 it composes with (rare) is excluded.
            nonword = [x for x in involved if kind(x) != WORD]
            if segmented or any(x < 0x80 for x in nonword):
                unsafe.update(x for x in involved if x >= 0x80)
            else:
                unsafe.update(nonword)
        elif segmented or any(kind(x) != kind(cp) for x in nfc):
            unsafe.add(cp)  # NFC replaces it by characters of another kind (or of the space-less scripts)
    while True:  # NFC may build a lower-unsafe character from its parts: they are unsafe too
        before = len(lower_unsafe)
        for cp, parts, nfc in compositions:
            if nfc == [cp] and cp in lower_unsafe:
                lower_unsafe.update(parts)
            elif any(x in lower_unsafe for x in nfc):
                lower_unsafe.add(cp)
        if len(lower_unsafe) == before:
            return unsafe | lower_unsafe


class TextBatch:
    """Several texts split into words at once: the words of text ``i`` are ``words[offsets[i]:offsets[i+1]]``.

    The words are exactly those of :func:`split_words` for each text.
    """

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self._joined = _SEPARATOR.join(self.texts)
        lengths = np.fromiter(map(len, self.texts), dtype=np.int64, count=len(self.texts))
        # Character offset of each text in the joined string (and one past the end).
        self.char_starts = np.zeros(len(self.texts) + 1, dtype=np.int64)
        np.cumsum(lengths + 1, out=self.char_starts[1:])

    @cached_property
    def code_points(self) -> np.ndarray:
        """The joined texts as code points (one per Python character, surrogates included)."""
        data = self._joined.encode("utf-32-le", "surrogatepass")
        return np.frombuffer(data, dtype="<u4")

    @cached_property
    def flags(self) -> np.ndarray:
        """The table bits of every code point."""
        return char_tables().flags[self.code_points]

    @cached_property
    def _tokens(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        points, flags = self.code_points, self.flags
        word = (flags & WORD) != 0
        token = word.copy()
        if len(word) > 2:
            # One inner character between two word characters belongs to the word ("anak-anak").
            token[1:-1] |= ((flags[1:-1] & INNER) != 0) & word[:-2] & word[2:]
        edges = np.diff(token.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        # Every other character becomes a space: str.split() then makes the token strings in C, several
        # times faster than slicing them one by one (no token character is whitespace).
        kept = np.where(token, points, np.uint32(32)).astype("<u4")
        words = kept.tobytes().decode("utf-32-le", "surrogatepass").split()
        first_token = np.searchsorted(starts, self.char_starts)
        lengths = ends - starts
        segmented = flags & SEGMENTED
        if not segmented.any():
            return words, first_token, lengths
        inside = np.concatenate(([0], np.cumsum(segmented != 0, dtype=np.int64)))
        cut = np.flatnonzero(inside[ends] > inside[starts])
        if cut.size == 0:
            return words, first_token, lengths
        # Tokens with characters of the space-less scripts: the syllable rules. Tokens all in Thai (nearly
        # every one of a Thai text) go through the syllable regex in one call, separated by a character no
        # syllable can hold (every alternative but "." needs Thai letters, and the regex looks ahead only
        # negatively, so a separator acts as the end of the text); half the time of one call per token.
        thai = ((points >= 0x0E00) & (points <= 0x0E7F)).view(np.int8)
        within = np.concatenate(([0], np.cumsum(thai, dtype=np.int64)))
        pure = within[ends[cut]] - within[starts[cut]] == lengths[cut]
        syllables = iter(_THAI_SYLLABLE.findall(_SEPARATOR_THAI.join(words[i] for i in cut[pure].tolist())))
        counts = np.ones(len(words), dtype=np.int64)
        out: list[str] = []
        last = 0
        for i, all_thai in zip(cut.tolist(), pure.tolist()):
            out += words[last:i]
            if all_thai:
                pieces = []
                for piece in syllables:
                    if piece == _SEPARATOR_THAI:
                        break
                    pieces.append(piece)
            else:
                pieces = _split_segmented_token(words[i])
            out += pieces
            counts[i] = len(pieces)
            last = i + 1
        out += words[last:]
        bounds = np.concatenate(([0], np.cumsum(counts)))
        return out, bounds[first_token], np.fromiter(map(len, out), dtype=np.int64, count=len(out))

    @property
    def words(self) -> list[str]:
        """Every word of every text, in order."""
        return self._tokens[0]

    @property
    def offsets(self) -> np.ndarray:
        """``len(texts) + 1`` word offsets: text ``i`` has the words ``offsets[i]`` to ``offsets[i+1]``."""
        return self._tokens[1]

    @property
    def word_lengths(self) -> np.ndarray:
        """The length in characters of every word."""
        return self._tokens[2]

    def words_of(self, i: int) -> list[str]:
        """The words of text ``i``."""
        return self.words[self.offsets[i] : self.offsets[i + 1]]

    def per_text(self, values: np.ndarray) -> np.ndarray:
        """Sums of a per-code-point array over each text (the separators count for nothing)."""
        totals = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
        ends = self.char_starts[1:] - 1
        return totals[ends] - totals[self.char_starts[:-1]]

    def texts_at(self, positions: np.ndarray) -> np.ndarray:
        """The text index of each code-point position (sorted or not)."""
        return np.searchsorted(self.char_starts, positions, side="right") - 1

    def _any_at(self, positions: np.ndarray) -> np.ndarray:
        """Per text: whether any of ``positions`` falls in it."""
        out = np.zeros(len(self.texts), dtype=bool)
        out[self.texts_at(positions)] = True
        return out

    def ccc_at(self, positions: np.ndarray) -> np.ndarray:
        """The canonical combining class of the code points at ``positions``."""
        return char_tables().ccc[self.code_points[positions]]

    @cached_property
    def _mark_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Adjacent combining marks: the positions of the second of each pair, and whether it is out of order."""
        marks = np.flatnonzero(self.flags & MARK)
        if marks.size < 2:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=bool)
        second = marks[1:][marks[1:] - 1 == marks[:-1]]
        return second, self.ccc_at(second - 1) > self.ccc_at(second)

    @cached_property
    def nfc(self) -> np.ndarray:
        """Per text: whether it is NFC-normalised (``unicodedata.is_normalized("NFC", text)``), mostly without
        normalising it: CPython normalises every text holding a character that may compose with the one
        before (the Bengali and Tamil vowel signs, the Devanagari nukta), about ten times slower.

        A text is not NFC when it holds a character NFC replaces, two adjacent combining marks out of
        canonical order, or a composable character that is not blocked from the starter before it and forms
        a canonical composition with it. Where that starter could itself be taken apart or composed first (it
        has a decomposition, or composes itself, or Hangul jamo are involved) the text is checked by
        ``unicodedata`` instead.
        """
        tables = char_tables()
        points, flags = self.code_points, self.flags
        second, inverted = self._mark_pairs
        bad = [np.flatnonzero(flags & NFC_NO), second[inverted]]
        unsure = np.empty(0, dtype=np.int64)
        maybe = np.flatnonzero(flags & NFC_MAYBE)
        if maybe.size:
            # The starter before each composable character: back over the marks in between (in canonical
            # order where no inversion was found: so the mark right before it has the highest class).
            start = maybe - 1
            for _ in range(_NFC_BACK):
                step = (start >= 0) & ((flags[np.maximum(start, 0)] & MARK) != 0)
                if not step.any():
                    break
                start = np.where(step, start - 1, start)
            valid = start >= 0
            starter = np.where(valid, points[np.maximum(start, 0)], 0).astype(np.int64)
            adjacent = start == maybe - 1
            mark = self.ccc_at(maybe)
            before = self.ccc_at(np.maximum(maybe - 1, 0))
            # A class-0 character composes only with the character right before it; a mark, unless a mark
            # of its class or higher stands between.
            free = valid & (adjacent | ((mark != 0) & (before < mark)))
            key = starter << 21 | points[maybe].astype(np.int64)
            bad.append(maybe[free & np.isin(key, tables.compositions)])
            deep = valid & ((flags[np.maximum(start, 0)] & MARK) != 0)  # more marks between than _NFC_BACK
            tricky = free & ((tables.flags[starter] & (NFC_DECOMPOSES | NFC_MAYBE)) != 0)
            tricky |= (flags[maybe] & NFC_HANGUL) != 0
            unsure = maybe[tricky | deep]
        out = ~self._any_at(np.concatenate(bad))
        for i in np.flatnonzero(out & self._any_at(unsure)).tolist():
            out[i] = unicodedata.is_normalized("NFC", self.texts[i])
        return out

    @cached_property
    def shingle_safe(self) -> np.ndarray:
        """Per text: whether its shingle words are its words, each NFC-normalised and lower-cased.

        True when the text has no character of ``_shingle_unsafe``, no two adjacent combining marks out of
        canonical order, and no combining mark of the space-less scripts next to another script's (a
        composition could reach over the first, as ``i`` + U+0E48 + U+0300 becomes ``ì`` + U+0E48).
        """
        flags = self.flags
        second, inverted = self._mark_pairs
        segmented = (flags[second] & SEGMENTED) != (flags[second - 1] & SEGMENTED)
        unsafe = np.concatenate((np.flatnonzero(flags & SHINGLE_UNSAFE), second[inverted | segmented]))
        return ~self._any_at(unsafe)


class Vocabulary:
    """Words numbered in order of first sight, shared by the quality rules and the MinHash shingles.

    The numbers only need to be equal for equal words; the vocabulary starts afresh (a new
    :attr:`generation`) when it holds ``max_words``, so its memory stays bounded on any corpus.
    """

    def __init__(self, max_words: int = 250_000) -> None:
        self.max_words = max_words
        self.generation = 0
        self._index: dict[str, int] = {}
        self.words: list[str] = []  # id -> word

    def ids(self, words: list[str]) -> np.ndarray:
        """The ids of ``words`` (int64), numbering the new ones."""
        index = self._index
        if len(index) + len(words) > self.max_words:
            self._index = index = {}
            self.words = []
            self.generation += 1
        new = set(words).difference(index)  # hashing in C: cheaper than a Python loop of setdefault
        if new:
            fresh = sorted(new)  # sorted: the same numbers in every process
            index.update(zip(fresh, range(len(index), len(index) + len(fresh))))
            self.words += fresh
        return np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))


def word_count(text: str, script: str | None = None) -> int:
    """The number of words :func:`split_words` finds."""
    return len(split_words(text, script))


__all__ = ["SCRIPTIO_CONTINUA", "CharTables", "TextBatch", "Vocabulary", "char_tables", "split_words", "word_count"]
