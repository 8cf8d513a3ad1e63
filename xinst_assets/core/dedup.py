"""Exact and near-duplicate removal within one language, global and incremental.

* Exact duplicates: documents whose normalised text is identical (same :func:`content_id`).
* Near duplicates: MinHash over word 5-gram shingles (words from :func:`split_words`, so Thai works), with
  LSH banding (datasketch's ``MinHash`` / ``MinHashLSH``) and a similarity check on each candidate pair. The
  shingles and signature size are datatrove's; the banding is tuned for short documents (see MinhashConfig).

Documents are visited in a stable order: representatives kept by earlier runs first, then new documents by
first-seen time, then publication time, then doc id. The first document of a cluster is its representative and
stays so in later runs (its signature is stored and given back through ``previous``); every later member is
dropped with ``duplicate_of`` = the representative's doc id. Clustering is transitive within a run (a document
near a dropped duplicate joins that duplicate's cluster), as with datatrove's union-find.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from xinst_assets.core.text import content_id, normalise
from xinst_assets.core.words import split_words

EXACT_DUPLICATE = "dedup_exact_duplicate"
NEAR_DUPLICATE = "dedup_near_duplicate"

# datasketch's 64-bit permutation scheme: hash values are uint64, which is how signatures are stored.
_SCHEME = "affine64"
_SIGNATURE_DTYPE = np.dtype("<u8")


@dataclass(frozen=True)
class MinhashConfig:
    """MinHash LSH settings: datatrove's word 5-grams and 112 permutations, banded for short documents.

    A pair with Jaccard similarity ``s`` of shingle sets agrees on one band of ``r`` rows with probability
    ``s**r`` and becomes a candidate with probability ``1 - (1 - s**r)**b``; the S-curve's midpoint is near
    ``(1/b)**(1/r)``.

    datatrove bands its 112 permutations as b=14 x r=8: midpoint ``(1/14)**(1/8) ~ 0.72``, with p(s=0.65) ~
    0.36, p(0.75) ~ 0.77, p(0.8) ~ 0.92. That suits long web pages, where a few edits barely move ``s``. Our
    documents are responses of about 1,000 characters (100-150 words): there a dated header, a changed figure
    and a dropped sentence bring 5-gram similarity down to 0.65-0.76 (the near-duplicates of the sample: 0.65
    to 0.96), and 14 x 8 missed 3 of the sample's 30 (two Turkish, one Tamil: Turkish precision fell to 0.94).
    So the same 112 permutations are banded b=28 x r=4: midpoint ``(1/28)**(1/4) ~ 0.43``, p(0.5) ~ 0.84,
    p(0.6) ~ 0.98, p(0.65) ~ 1.0; and every candidate pair is then verified: it is merged only if the share of
    equal signature values (an unbiased estimate of ``s``, standard error <= 0.05 with 112 values) is at least
    ``min_jaccard`` = 0.5. Unrelated texts on one topic share almost no 5-gram (at most 0.03 in the sample),
    so they become candidates with p ~ 0 and never pass the check. ``min_jaccard=None`` merges every LSH
    candidate, as datatrove does.
    """

    ngram_size: int = 5  # word 5-grams (datatrove, FineWeb)
    num_bands: int = 28
    rows_per_band: int = 4
    min_jaccard: float | None = 0.5
    seed: int = 1
    # Documents are hashed in chunks of this many (bounds the (shingles x permutations) matrix in memory:
    # 256 docs x ~300 shingles x 112 x 8 bytes ~ 70 MB at most).
    batch_docs: int = 256

    def __post_init__(self) -> None:
        for name in ("ngram_size", "num_bands", "rows_per_band", "batch_docs"):
            if getattr(self, name) < 1:
                raise ValueError(f"MinhashConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.min_jaccard is not None and not 0.0 <= self.min_jaccard <= 1.0:
            raise ValueError(
                f"MinhashConfig.min_jaccard must be within [0, 1] or None, got {self.min_jaccard}"
            )

    @property
    def num_perm(self) -> int:
        return self.num_bands * self.rows_per_band

    @property
    def threshold(self) -> float:
        """The midpoint of the LSH S-curve: pairs above it are likely to become candidates."""
        return (1.0 / self.num_bands) ** (1.0 / self.rows_per_band)

    def candidate_probability(self, similarity: float) -> float:
        """The probability that a pair of this Jaccard similarity shares at least one band."""
        return 1.0 - (1.0 - similarity**self.rows_per_band) ** self.num_bands

    @property
    def fingerprint(self) -> str:
        """Identifies the signature function: stored signatures are valid only under the same fingerprint."""
        return f"minhash-{_SCHEME}-w{self.ngram_size}-b{self.num_bands}x{self.rows_per_band}-s{self.seed}"


@dataclass(frozen=True)
class DedupCandidate:
    """A document to deduplicate. Timestamps are ISO 8601 strings (they sort as text); ``None`` sorts last."""

    doc_id: str
    text: str
    seen_at: str | None = None  # when the pipeline first ingested it
    published_at: str | None = None  # the document's own timestamp


@dataclass(frozen=True)
class StoredRepresentative:
    """A representative kept by an earlier run, as stored by the caller."""

    doc_id: str
    content_key: str  # content_id of its text
    signature: bytes  # signature_to_bytes(...)
    cluster_size: int = 1


@dataclass(frozen=True)
class DedupDecision:
    """The fate of one candidate (a survivor's cluster size is in :attr:`DedupOutcome.cluster_sizes`)."""

    doc_id: str
    keep: bool
    reason: str | None = None
    duplicate_of: str | None = None


@dataclass
class DedupOutcome:
    """Decisions aligned with the input, plus what the caller stores for the next run."""

    decisions: list[DedupDecision]
    # Cluster size of every representative that is new or gained members in this run.
    cluster_sizes: dict[str, int] = field(default_factory=dict)
    # Representatives kept in this run, to store and pass back as ``previous`` next time.
    new_representatives: list[StoredRepresentative] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return sum(d.keep for d in self.decisions)


def signature_to_bytes(signature: np.ndarray) -> bytes:
    """Serialise a signature (uint64 hash values) as little-endian bytes (8 per permutation)."""
    return np.asarray(signature, dtype=_SIGNATURE_DTYPE).tobytes()


def signature_from_bytes(data: bytes, config: MinhashConfig) -> np.ndarray:
    """Read a signature written by :func:`signature_to_bytes`; a wrong length is a clear error."""
    expected = config.num_perm * _SIGNATURE_DTYPE.itemsize
    if len(data) != expected:
        raise ValueError(
            f"stored MinHash signature has {len(data)} bytes, expected {expected} for {config.fingerprint}; "
            "it was made with other settings: recompute the signatures"
        )
    return np.frombuffer(data, dtype=_SIGNATURE_DTYPE).astype(np.uint64)


def shingles(text: str, script: str | None, ngram_size: int) -> list[list[str]]:
    """The word n-grams of the normalised, lower-cased text (all its words as one shingle if fewer)."""
    words = _words(text, script)
    if not words:
        return []
    size = min(ngram_size, len(words))
    return [words[i : i + size] for i in range(len(words) - size + 1)]


def _words(text: str, script: str | None) -> list[str]:
    return split_words(normalise(text).lower(), script)


def _hash64(word: str) -> int:
    # The first 8 bytes of SHA-1, as datasketch.hashfunc.sha1_hash64 does.
    return int.from_bytes(hashlib.sha1(word.encode("utf-8")).digest()[:8], "little")


# Shingle hashes combine word hashes as a polynomial in this odd 64-bit constant (2^64 / golden ratio), with
# wrapping uint64 arithmetic: one SHA-1 per distinct word instead of one per shingle, and numpy does the rest.
_NGRAM_BASE = np.uint64(0x9E3779B97F4A7C15)


def shingle_hashes(
    text: str, script: str | None, ngram_size: int, word_hashes: dict[str, int] | None = None
) -> np.ndarray:
    """64-bit hashes of the word n-grams of ``text`` (see :func:`shingles`); ``word_hashes`` caches words."""
    words = _words(text, script)
    if not words:
        return np.empty(0, dtype=np.uint64)
    cache = {} if word_hashes is None else word_hashes
    hashed = np.fromiter(
        (cache[w] if w in cache else cache.setdefault(w, _hash64(w)) for w in words),
        dtype=np.uint64,
        count=len(words),
    )
    size = min(ngram_size, len(words))
    count = len(words) - size + 1
    out = hashed[:count].copy()
    for k in range(1, size):
        out = out * _NGRAM_BASE + hashed[k : k + count]
    return out


def _fmix64(hv: np.ndarray) -> np.ndarray:
    # MurmurHash3's 64-bit finalizer: the pre-mix of datasketch's affine64 scheme (wrapping uint64 arithmetic)
    hv = hv ^ (hv >> np.uint64(33))
    hv = hv * np.uint64(0xFF51AFD7ED558CCD)
    hv = hv ^ (hv >> np.uint64(33))
    hv = hv * np.uint64(0xC4CEB9FE1A85EC53)
    return hv ^ (hv >> np.uint64(33))


class MinhashSigner:
    """Computes MinHash signatures for many documents at once (numpy over a chunk of documents).

    Identical to datasketch's ``MinHash(num_perm, seed, scheme="affine64")`` updated with the shingle hashes
    of :func:`shingle_hashes`, but one matrix operation per chunk of documents instead of one per document.
    """

    def __init__(self, config: MinhashConfig = MinhashConfig()) -> None:
        self.config = config
        a, b = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=_SCHEME).permutations
        self._a = np.asarray(a, dtype=np.uint64)
        self._b = np.asarray(b, dtype=np.uint64)
        self._empty = np.full(config.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)

    def signatures(self, texts: Sequence[str], script: str | None) -> tuple[np.ndarray, list[bool]]:
        """Signatures (``len(texts)`` x ``num_perm`` uint64) and whether each text had any shingle."""
        out = np.empty((len(texts), self.config.num_perm), dtype=np.uint64)
        has_shingles: list[bool] = []
        step = self.config.batch_docs
        for start in range(0, len(texts), step):
            word_hashes: dict[str, int] = {}
            chunk = [
                shingle_hashes(t, script, self.config.ngram_size, word_hashes)
                for t in texts[start : start + step]
            ]
            has_shingles += [c.size > 0 for c in chunk]
            counts = np.array([c.size for c in chunk], dtype=np.int64)
            hashes = np.concatenate(chunk) if chunk else np.empty(0, dtype=np.uint64)
            block = out[start : start + len(chunk)]
            block[:] = self._empty
            if hashes.size:
                permuted = _fmix64(hashes)[:, None] * self._a[None, :] + self._b[None, :]
                nonempty = counts > 0
                offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))[nonempty]
                block[nonempty] = np.minimum.reduceat(permuted, offsets, axis=0)
        return out, has_shingles


def _order_key(doc: DedupCandidate, index: int) -> tuple:
    last = "\uffff"  # missing timestamps sort after every ISO 8601 string
    return (doc.seen_at or last, doc.published_at or last, doc.doc_id, index)


def deduplicate(
    docs: Sequence[DedupCandidate],
    script: str | None,
    config: MinhashConfig = MinhashConfig(),
    previous: Iterable[StoredRepresentative] = (),
) -> DedupOutcome:
    """Deduplicate ``docs`` against each other and against the representatives of earlier runs.

    Returns one decision per input document (same order). A candidate whose doc id and content equal a stored
    representative's is that representative (kept, no new member): running a batch twice changes nothing.
    """
    signer = MinhashSigner(config)
    lsh = MinHashLSH(num_perm=config.num_perm, params=(config.num_bands, config.rows_per_band))
    representative_of: list[str] = []  # LSH key (int) -> doc id of its cluster's representative
    indexed: list[np.ndarray] = []  # LSH key (int) -> signature, for the similarity check
    rank_of: dict[str, int] = {}  # representative doc id -> visiting rank (earlier wins)
    by_content: dict[str, str] = {}  # content key -> representative doc id
    sizes: dict[str, int] = {}
    touched: set[str] = set()
    previous_ids: dict[str, str] = {}

    def index(signature: np.ndarray, representative: str) -> None:
        key = len(representative_of)
        representative_of.append(representative)
        indexed.append(signature)
        lsh.insert(
            key, LeanMinHash(seed=config.seed, hashvalues=signature, scheme=_SCHEME), check_duplication=False
        )

    for rep in previous:
        signature = signature_from_bytes(rep.signature, config)
        rank_of[rep.doc_id] = len(rank_of)
        by_content.setdefault(rep.content_key, rep.doc_id)
        sizes[rep.doc_id] = rep.cluster_size
        previous_ids[rep.doc_id] = rep.content_key
        index(signature, rep.doc_id)

    order = sorted(range(len(docs)), key=lambda i: _order_key(docs[i], i))
    ordered = [docs[i] for i in order]
    signatures, has_shingles = signer.signatures([d.text for d in ordered], script)
    decisions: dict[int, DedupDecision] = {}
    new_reps: list[StoredRepresentative] = []

    for position, (i, doc) in enumerate(zip(order, ordered)):
        key = content_id(doc.text)
        if previous_ids.get(doc.doc_id) == key:  # a stored representative given again
            decisions[i] = DedupDecision(doc.doc_id, True)
            previous_ids.pop(doc.doc_id)  # a second copy of it is an exact duplicate
            continue
        representative = by_content.get(key)
        if representative is not None:
            decisions[i] = DedupDecision(doc.doc_id, False, EXACT_DUPLICATE, representative)
            sizes[representative] += 1
            touched.add(representative)
            continue
        signature = signatures[position]
        if has_shingles[position]:
            minhash = LeanMinHash(seed=config.seed, hashvalues=signature, scheme=_SCHEME)
            keys = list(lsh.query(minhash))
            if keys and config.min_jaccard is not None:
                # The share of equal signature values estimates the Jaccard similarity (one numpy call).
                similar = (np.stack([indexed[k] for k in keys]) == signature).mean(
                    axis=1
                ) >= config.min_jaccard
                keys = [k for k, ok in zip(keys, similar) if ok]
            matches = {representative_of[k] for k in keys}
            if matches:
                representative = min(matches, key=rank_of.__getitem__)
                decisions[i] = DedupDecision(doc.doc_id, False, NEAR_DUPLICATE, representative)
                sizes[representative] += 1
                touched.add(representative)
                by_content[key] = representative
                index(signature, representative)  # transitive: later near-copies of this one join the cluster
                continue
            index(signature, doc.doc_id)
        decisions[i] = DedupDecision(doc.doc_id, True)
        rank_of[doc.doc_id] = len(rank_of)
        by_content[key] = doc.doc_id
        sizes[doc.doc_id] = 1
        touched.add(doc.doc_id)
        new_reps.append(StoredRepresentative(doc.doc_id, key, signature_to_bytes(signature)))

    cluster_sizes = {doc_id: sizes[doc_id] for doc_id in sorted(touched, key=rank_of.__getitem__)}
    new_reps = [StoredRepresentative(r.doc_id, r.content_key, r.signature, sizes[r.doc_id]) for r in new_reps]
    return DedupOutcome([decisions[i] for i in range(len(docs))], cluster_sizes, new_reps)
