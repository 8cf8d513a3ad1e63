"""Text normalisation and stable content ids."""

from __future__ import annotations

import hashlib
import unicodedata


def normalise(text: str) -> str:
    """NFC-normalise, collapse runs of whitespace to one space and strip.

    Two copies of a document that differ only in Unicode composition or spacing normalise to the same string,
    so they get the same content id (and count as exact duplicates downstream).
    """
    # str.split() splits at runs of the characters the regex \s matches (str.isspace) and drops them at both
    # ends: " ".join of it equals re.sub(r"\s+", " ", ...).strip(), and is two to three times faster.
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_id(text: str, is_nfc: bool = False) -> str:
    """A stable id for a text: the first 16 bytes of SHA-256 of its normalised form, as hex.

    ``is_nfc``: the caller knows the text is NFC already (``TextBatch.nfc``), so normalising skips NFC.
    """
    normal = " ".join(text.split()) if is_nfc else normalise(text)
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()[:32]


def stable_hash(*parts: str) -> str:
    """SHA-256 over several strings with an unambiguous separator (for cache keys and pair ids)."""
    digest = hashlib.sha256()
    for part in parts:
        encoded = part.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()[:32]
