"""The rules one record must meet to become a document, shared by the JSONL and Parquet readers.

A record is a text and a few short fields (url, timestamp, source, and the source's own id and lang, kept as
provenance). The rules, in order:

1. the text is a non-empty string of at most ``max_doc_chars`` characters;
2. each field is null, a string, a number or a boolean (numbers and booleans are written as strings); an
   object or a list is ``invalid_field``; a field longer than its cap is ``field_too_long`` (a 50 MB "url"
   must not be copied into every table downstream);
3. no string holds an unpaired surrogate (JSON allows the escape ``"\\ud800"``; UTF-8 cannot store it):
   ``invalid_unicode``;
4. control characters: in the text, form feed and vertical tab become a line feed (they separate pages and
   lines in extracted text) and the other C0 controls except tab, line feed and carriage return, and DEL, are
   removed (NUL above all: it breaks C tools and tokenizers); in the fields every C0 control and DEL is
   removed. The number removed or replaced is kept with the document (``control_chars``). A text in which
   such characters are more than a tenth of the characters (and more than 8 of them) is ``binary_content``:
   a binary or UTF-16 file, not text.

A record that breaks a rule is quarantined with the reason and a detail naming the field; it never becomes a
document with the offending value cut or dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from functools import cached_property
from collections.abc import Sequence
from typing import Any, NamedTuple

# Quarantine reasons for a record (stable strings: counted in metadata and queried in tests).
NULL_TEXT = "null_text"
NON_STRING_TEXT = "non_string_text"
EMPTY_TEXT = "empty_text"
TOO_LONG = "too_long"
INVALID_UNICODE = "invalid_unicode"
INVALID_FIELD = "invalid_field"
FIELD_TOO_LONG = "field_too_long"
BINARY_CONTENT = "binary_content"

# The fields read besides the text, under their column names in raw_documents.
FIELDS = ("url", "timestamp", "source", "source_id", "source_lang")

_TEXT_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TEXT_BREAKS = str.maketrans({"\x0b": "\n", "\x0c": "\n"})
_FIELD_CONTROLS = re.compile("[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# One search tells whether a string needs any of the rules above (almost none does): the fast path.
_TEXT_SUSPECT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_FIELD_SUSPECT = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_field_suspect = _FIELD_SUSPECT.search
BINARY_SHARE = 0.1  # controls above this share of the characters: not text
BINARY_MIN = 8  # ... and more than this many (a short text with a stray NUL is cleaned, not rejected)


@dataclass(frozen=True)
class FieldCaps:
    """The longest value accepted for each field, in characters."""

    # Above what common web servers accept in a request line (Apache: 8,190 bytes) and what crawls store.
    url: int = 8_192
    # ISO 8601 timestamps and crawl names are tens of characters; record ids (hashes, UUIDs, URLs) a few
    # hundred at most.
    timestamp: int = 256
    source: int = 256
    source_id: int = 1_024
    source_lang: int = 64

    def cap(self, name: str) -> int:
        return getattr(self, name)

    @cached_property
    def items(self) -> tuple[tuple[str, int], ...]:
        """(field, cap) for every field, in :data:`FIELDS` order (computed once: read for every record)."""
        return tuple((f.name, getattr(self, f.name)) for f in dataclass_fields(self))

    @cached_property
    def limits(self) -> tuple[int, ...]:
        """The caps alone, in :data:`FIELDS` order."""
        return tuple(cap for _, cap in self.items)


class Rejection(NamedTuple):
    """Why a record is not a document."""

    reason: str
    detail: str
    snippet: Any = None


class CleanRecord(NamedTuple):
    """A record that passed the rules: its text and fields (in :data:`FIELDS` order) cleaned, and how many
    control characters were removed or replaced."""

    text: str
    fields: tuple[str | None, ...]
    control_chars: int


def clean_text(text: str) -> tuple[str, int]:
    """``text`` with the control-character rule applied, and the number of characters removed or replaced."""
    if _TEXT_CONTROLS.search(text) is None:
        return text, 0
    cleaned = _TEXT_CONTROLS.sub("", text.translate(_TEXT_BREAKS))
    breaks = text.count("\x0b") + text.count("\x0c")
    return cleaned, len(text) - len(cleaned) + breaks


def _field(name: str, value: Any, cap: int) -> tuple[str | None, int] | Rejection:
    """A field that is not a plain short string, or one that holds a surrogate or a control character."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = repr(value)
    elif not isinstance(value, str):
        kind = {dict: "an object", list: "a list"}.get(type(value), f"a {type(value).__name__}")
        return Rejection(INVALID_FIELD, f"{name} is {kind}, not a string, number or boolean", value)
    if len(value) > cap:
        return Rejection(FIELD_TOO_LONG, f"{name} has {len(value):,} characters > {cap:,}", value)
    if _SURROGATE.search(value):
        return Rejection(INVALID_UNICODE, f"{name} holds an unpaired surrogate", value)
    if _FIELD_CONTROLS.search(value) is None:
        return value, 0
    cleaned = _FIELD_CONTROLS.sub("", value)
    return cleaned, len(value) - len(cleaned)


def clean_record(text: Any, fields: Sequence[Any], max_doc_chars: int, caps: FieldCaps) -> CleanRecord | Rejection:
    """Apply the module's rules to one record; ``fields`` holds the raw values of :data:`FIELDS`, in order."""
    if type(text) is not str:
        if text is None:
            return Rejection(NULL_TEXT, "text is null")
        return Rejection(NON_STRING_TEXT, f"text is a {type(text).__name__}, not a string", text)
    if len(text) > max_doc_chars:
        return Rejection(TOO_LONG, f"{len(text):,} characters > max_doc_chars {max_doc_chars:,}", text)
    cleaned, controls = text, 0
    if _TEXT_SUSPECT.search(text):
        surrogate = _SURROGATE.search(text)
        if surrogate:
            return Rejection(INVALID_UNICODE, f"unpaired surrogate at character {surrogate.start()}", text)
        cleaned, controls = clean_text(text)
        if controls > BINARY_MIN and controls > BINARY_SHARE * len(text):
            return Rejection(BINARY_CONTENT, f"{controls:,} of {len(text):,} characters are control characters: "
                                             "a binary or UTF-16 file, not text", text)
    if not cleaned or cleaned.isspace():
        detail = "text is empty or whitespace only" + (" once control characters are removed" if controls else "")
        return Rejection(EMPTY_TEXT, detail, text)
    for value, cap in zip(fields, caps.limits):
        if value is not None and (type(value) is not str or len(value) > cap or _field_suspect(value)):
            break
    else:  # the usual case: every field null or a short clean string, kept as it is
        return CleanRecord(cleaned, tuple(fields), controls)
    out = None
    for i, (value, (name, cap)) in enumerate(zip(fields, caps.items)):
        if value is None or (type(value) is str and len(value) <= cap and not _FIELD_SUSPECT.search(value)):
            continue  # the usual case: null, or a short clean string, kept as it is
        result = _field(name, value, cap)
        if isinstance(result, Rejection):
            return result
        if out is None:
            out = list(fields)
        out[i], removed = result
        controls += removed
    return CleanRecord(cleaned, tuple(fields) if out is None else tuple(out), controls)
