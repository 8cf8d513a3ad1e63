"""Exact and near-duplicate clusters within one language, the same whatever order documents arrive in.

* Exact duplicates: documents whose normalised text is identical (same :func:`content_id`); the copy with the
  smallest doc id stands for them (in the pipeline, dbt's ``screened_documents`` has collapsed them already).
* Near duplicates: MinHash over word 5-gram shingles (words from :func:`split_words`, so Thai works), LSH
  banding for candidate pairs, then a similarity check on each candidate pair (:class:`MinhashConfig`).

The clustering rule (a function of the set of documents, never of their order or of the run that saw them):

1. **Edges.** Two distinct texts are *near* when they share a whole LSH band and their word 5-gram Jaccard
   similarity is at least ``min_jaccard`` (0.6). The similarity is estimated by the share of equal signature
   values; an estimate within ``exact_margin`` of the threshold is replaced by the exact Jaccard of the two
   shingle sets, computed from the texts (MinHash's error there is as large as the gap between a near copy
   and a page that merely shares a template).
2. **Components** of that graph are the unit of work of an incremental run: a refresh clusters again every
   component that a new, changed or removed document touches, and gets exactly the clusters of a run over
   everything (a component's clusters depend on the component alone).
3. **Clusters are stars inside a component**, so no chain of small edits can carry a cluster away from its
   representative: every member is near its representative itself. Texts are ranked by centrality: first
   the number of documents it is near (itself with its exact copies, and its near neighbours with all of
   theirs), then its own number of exact copies (the version reposted verbatim most), then the largest sum of
   estimated similarities with its neighbours, then the smallest doc id (content id); in that order, a text
   not yet claimed becomes a representative and claims every unclaimed neighbour (a greedy maximal
   independent set: each member joins its best-ranked neighbouring representative). A group whose original
   is near every copy is never split: a copy not near all the others is near fewer documents.

Why the most central text represents its cluster: the texts become responses of instruction pairs, and
copies differ from the text they copy by their own edits (a footer, a share line, a changed date, a dropped
sentence) that no other copy shares, so the version nearest to most others is the one without them - the
original when it is among them. A document's rank depends on its neighbours only (no timestamps, no arrival
order): shuffled inputs, or the same documents split over several refreshes, give the same clusters and the
same representatives. A representative can change when its cluster changes (a more central copy arrives, or
it is removed): the refresh then records the new one, as a full run would.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from xinst_assets.core.text import content_id, normalise
from xinst_assets.core.words import TextBatch, Vocabulary, split_words

EXACT_DUPLICATE = "dedup_exact_duplicate"
NEAR_DUPLICATE = "dedup_near_duplicate"
KEPT = "kept"  # a representative (or a text without words: kept, never merged)

# datasketch's 64-bit permutation scheme: hash values are uint64, which is how signatures are stored.
_SCHEME = "affine64"
_SIGNATURE_DTYPE = np.dtype("<u8")
# Signature rows at most this far apart are read from the index's file in one read (NearDuplicateIndex._read):
# only neighbours, as candidate pairs point all over the file and the gaps would be read too.
_READ_GAP = 1
# The version of the clustering rule in the module docstring: part of MinhashConfig.decision_key, so that
# decisions stored under another rule are made again.
_RULE = "star1"


@dataclass(frozen=True)
class MinhashConfig:
    """MinHash LSH settings: datatrove's word 5-grams and 112 permutations, banded for short documents, and
    the similarity that makes two documents near duplicates.

    A pair with Jaccard similarity ``s`` of shingle sets agrees on one band of ``r`` rows with probability
    ``s**r`` and becomes a candidate with probability ``1 - (1 - s**r)**b``; the S-curve's midpoint is near
    ``(1/b)**(1/r)``.

    datatrove bands its 112 permutations as b=14 x r=8: midpoint ``(1/14)**(1/8) ~ 0.72``, with p(s=0.65) ~
    0.36, p(0.75) ~ 0.77, p(0.8) ~ 0.92. That suits long web pages, where a few edits barely move ``s``. Our
    documents are responses of about 1,000 characters (100-150 words): there a dated header, a changed figure
    and a dropped sentence bring 5-gram similarity down to 0.65-0.76 (the near-duplicates of the sample: 0.65
    to 0.96), and 14 x 8 missed 3 of the sample's 30. So the same 112 permutations are banded b=28 x r=4:
    midpoint ``(1/28)**(1/4) ~ 0.43``, p(0.6) ~ 0.98, p(0.65) ~ 0.996, p(0.8) > 0.999999.

    Every candidate pair is then checked against ``min_jaccard`` = 0.6: near copies of one text are at 0.65
    and above (a crawl's repeated article with another header, date or share line), while pages that share a
    site template, a topic or a boilerplate intro but not their content stay at 0.5 and below. The share of
    equal signature values estimates ``s`` with a standard error of ``sqrt(s(1-s)/112)``, about 0.046 near
    0.6: too coarse to separate 0.5 from 0.65 reliably, so an estimate within ``exact_margin`` (0.15, over 3
    standard errors) of the threshold is settled by the exact Jaccard of the two texts' shingle sets (when
    the caller gives the texts: :class:`NearDuplicateIndex`'s ``texts``). ``min_jaccard=None`` makes every
    LSH candidate an edge, as datatrove does.
    """

    ngram_size: int = 5  # word 5-grams (datatrove, FineWeb)
    num_bands: int = 28
    rows_per_band: int = 4
    min_jaccard: float | None = 0.6
    exact_margin: float = 0.15
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
        if not 0.0 <= self.exact_margin <= 1.0:
            raise ValueError(f"MinhashConfig.exact_margin must be within [0, 1], got {self.exact_margin}")

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

    @property
    def decision_key(self) -> str:
        """Identifies how near duplicates are decided (signatures, similarity check, clustering rule): stored
        clusters are valid only under the same key."""
        return f"{self.fingerprint}-j{self.min_jaccard}-m{self.exact_margin}-{_RULE}"


@dataclass(frozen=True)
class DedupCandidate:
    """A document to deduplicate."""

    doc_id: str
    text: str


@dataclass(frozen=True)
class DedupDecision:
    """The fate of one candidate (a survivor's cluster size is in :attr:`DedupOutcome.cluster_sizes`)."""

    doc_id: str
    keep: bool
    reason: str | None = None
    duplicate_of: str | None = None


@dataclass
class DedupOutcome:
    """Decisions aligned with the input, and the cluster size of every representative (itself included)."""

    decisions: list[DedupDecision]
    cluster_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return sum(d.keep for d in self.decisions)

    def clusters(self) -> dict[str, frozenset[str]]:
        """Each representative's cluster: the doc ids of its members, itself included."""
        out: dict[str, set[str]] = {}
        for d in self.decisions:
            out.setdefault(d.doc_id if d.keep else d.duplicate_of, set()).add(d.doc_id)
        return {rep: frozenset(members) for rep, members in out.items()}


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


@lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine64 permutation parameters h -> a*h + b (mod 2^64), drawn as datasketch draws them
    (tested equal). Not imported from datasketch: it pulls in scipy, a second of start-up in every process."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd: bijective
    b = gen.randint(0, 1 << 64, num_perm, dtype=np.uint64)
    return a, b


class MinhashSigner:
    """Computes MinHash signatures for many documents at once (numpy over chunks of shingles).

    Identical to datasketch's ``MinHash(num_perm, seed, scheme="affine64")`` updated with the shingle hashes
    of :func:`shingle_hashes`, but one matrix operation per chunk of documents instead of one per document.
    The words of a text come from :class:`TextBatch`, shared with the quality rules; the SHA-1 of each
    distinct word is computed once per process (cached by vocabulary id).
    """

    # Shingles per block: (permutations x shingles) uint64 values, 112 x 4,096 x 8 bytes = 3.7 MB, which
    # stays in the CPU cache (a block 20x larger was 3x slower per shingle).
    block_shingles = 4_096

    def __init__(self, config: MinhashConfig = MinhashConfig(), vocabulary: Vocabulary | None = None) -> None:
        self.config = config
        a, b = _permutations(config.num_perm, config.seed)
        self._a = a[:, None]
        self._b = b[:, None]
        self.vocabulary = vocabulary if vocabulary is not None else Vocabulary()
        self._generation = -1
        self._word_hashes = np.empty(0, dtype=np.uint64)  # vocabulary id -> hash of its shingle word
        self._slow_cache: dict[str, int] = {}  # shingle word -> hash, for texts split the slow way

    def signatures(self, texts: Sequence[str], script: str | None) -> tuple[np.ndarray, list[bool]]:
        """Signatures (``len(texts)`` x ``num_perm`` uint64) and whether each text had any shingle."""
        split_words("", script)  # a malformed script code is the usual clear error
        batch = TextBatch(texts)
        return self.signatures_of(batch, self.vocabulary.ids(batch.words), script)

    def signatures_of(
        self, batch: TextBatch, ids: np.ndarray, script: str | None, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[bool]]:
        """Signatures of the texts ``rows`` (default: all) of a split batch; ``ids`` from ``self.vocabulary``.

        A text whose shingle words are its words lower-cased (``batch.shingle_safe``: nearly every text)
        takes them from the batch; any other is split again from ``normalise(text).lower()``.
        """
        rows = np.arange(len(batch.texts)) if rows is None else np.asarray(rows, dtype=np.int64)
        offsets = batch.offsets
        counts = offsets[rows + 1] - offsets[rows]
        safe = batch.shingle_safe[rows]
        chosen = np.zeros(len(batch.texts), dtype=bool)
        chosen[rows[safe]] = True
        take = np.repeat(chosen, np.diff(offsets))
        hashes = np.empty(int(counts.sum()), dtype=np.uint64)
        local = np.concatenate(([0], np.cumsum(counts)))
        fast = np.repeat(safe, counts)
        hashes[fast] = self._hashes_of(ids[take])
        for k in np.flatnonzero(~safe).tolist():
            words = _words(batch.texts[int(rows[k])], script)
            # The slow split may find another number of words than the batch: rebuild around it.
            cache = self._slow_cache
            if len(cache) > self.vocabulary.max_words:
                cache.clear()
            slow = np.fromiter(
                (cache[w] if w in cache else cache.setdefault(w, _hash64(w)) for w in words),
                dtype=np.uint64,
                count=len(words),
            )
            hashes = np.concatenate((hashes[: local[k]], slow, hashes[local[k + 1] :]))
            shift = len(slow) - int(counts[k])
            counts[k] = len(slow)
            local[k + 1 :] += shift
        grams, gram_offsets = _ngram_hashes(hashes, local, self.config.ngram_size)
        return self._minhash(grams, gram_offsets), (np.diff(gram_offsets) > 0).tolist()

    def _hashes_of(self, ids: np.ndarray) -> np.ndarray:
        vocabulary = self.vocabulary
        if vocabulary.generation != self._generation:
            self._generation = vocabulary.generation
            self._word_hashes = np.empty(0, dtype=np.uint64)
        known = len(self._word_hashes)
        if known < len(vocabulary.words):
            fresh = [
                _hash64(unicodedata.normalize("NFC", w).lower()) for w in vocabulary.words[known:]
            ]
            self._word_hashes = np.concatenate((self._word_hashes, np.array(fresh, dtype=np.uint64)))
        return self._word_hashes[ids]

    def _minhash(self, grams: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        docs = len(offsets) - 1
        out = np.full((docs, self.config.num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
        counts = np.diff(offsets)
        nonempty = np.flatnonzero(counts > 0)
        if nonempty.size == 0:
            return out
        mixed = _fmix64(grams)
        # Consecutive non-empty documents in blocks of about block_shingles shingles.
        ends = offsets[nonempty + 1]
        cuts = np.searchsorted(ends, np.arange(0, int(ends[-1]), self.block_shingles), side="right")
        bounds = sorted(set(np.append(np.maximum(cuts, 1), len(nonempty)).tolist()) | {0})
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if hi <= lo:
                continue
            block_docs = nonempty[lo:hi]
            start, stop = int(offsets[block_docs[0]]), int(offsets[block_docs[-1] + 1])
            block = self._a * mixed[None, start:stop]
            block += self._b
            out[block_docs] = np.minimum.reduceat(block, offsets[block_docs] - start, axis=1).T
        return out


def _ngram_hashes(hashes: np.ndarray, offsets: np.ndarray, ngram_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of many texts (see :func:`shingle_hashes`) from their word hashes, and their offsets."""
    counts = np.diff(offsets)
    per_text = np.where(counts >= ngram_size, counts - ngram_size + 1, np.minimum(counts, 1))
    gram_offsets = np.concatenate(([0], np.cumsum(per_text)))
    out = np.empty(int(gram_offsets[-1]), dtype=np.uint64)
    total = len(hashes)
    if total >= ngram_size:
        size = total - ngram_size + 1
        grams = hashes[:size].copy()
        for k in range(1, ngram_size):
            grams *= _NGRAM_BASE
            grams += hashes[k : k + size]
        end_of = np.repeat(offsets[1:], counts)[:size]
        inside = np.arange(size) + ngram_size <= end_of
        full = counts >= ngram_size
        out[np.repeat(full, per_text)] = grams[inside]
    for k in np.flatnonzero((counts > 0) & (counts < ngram_size)).tolist():
        words = hashes[offsets[k] : offsets[k + 1]]
        value = words[:1].copy()
        for h in words[1:]:
            value = value * _NGRAM_BASE + h
        out[gram_offsets[k]] = value[0]
    return out, gram_offsets


# --- The index in DuckDB ----------------------------------------------------------------------------------

# Gives the texts of doc ids (same order; None for one it cannot find), for the exact similarity check.
TextSource = Callable[[Sequence[str]], Sequence["str | None"]]


def band_hashes(signatures: np.ndarray, config: MinhashConfig) -> np.ndarray:
    """One 64-bit hash per LSH band (``len(signatures)`` x ``num_bands``).

    Two documents are LSH candidates when a whole band of their signatures is equal; equal bands hash
    equally, and a rare collision of unequal bands is caught when the pair is checked (:class:`NearDuplicateIndex`
    compares the bands themselves), so the candidates are exactly datasketch's ``MinHashLSH`` ones.
    """
    bands = signatures.reshape(len(signatures), config.num_bands, config.rows_per_band)
    h = np.zeros(bands.shape[:2], dtype=np.uint64)
    for row in range(config.rows_per_band):
        h = _fmix64(h ^ bands[:, :, row])
        h *= _NGRAM_BASE
    return _fmix64(h)




def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The Jaccard similarity of two sets of shingle hashes, each a sorted array of unique values."""
    common = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - common
    return common / union if union else 1.0


_DOCS_SCHEMA = pa.schema(
    [("pos", pa.int64()), ("doc_id", pa.string()), ("content_key", pa.string()), ("shingled", pa.bool_()),
     ("copies", pa.int64())]
)
RESULT_SCHEMA = pa.schema(
    [
        ("pos", pa.int64()),
        ("doc_id", pa.string()),
        ("kind", pa.string()),  # kept, dedup_exact_duplicate, dedup_near_duplicate
        ("duplicate_of", pa.string()),  # the representative of a duplicate's cluster
        ("content_key", pa.string()),
        ("signature", pa.binary()),
        ("cluster_size", pa.int64()),  # for kept documents: the documents of its cluster, itself included
        ("component", pa.string()),  # the best-ranked document of its component (see the module docstring)
    ]
)


@dataclass
class IndexStats:
    """What one :meth:`NearDuplicateIndex.run` compared."""

    candidate_pairs: int = 0  # distinct pairs of texts sharing a band hash
    near_pairs: int = 0  # edges: pairs that passed the similarity check
    exact_checks: int = 0  # pairs settled by the exact Jaccard of their texts
    clustered: int = 0  # texts with at least one near neighbour


class NearDuplicateIndex:
    """Exact and near-duplicate clusters of a set of documents (the rule of the module docstring), in a DuckDB
    scratch database, with bounded memory.

    Feed documents with their signatures in batches (:meth:`add`, any order: the result does not depend on
    it); :meth:`run` decides, :meth:`results` streams one row per document. Band hashes go to one DuckDB
    table (band, position, hash); a join on band and hash, over a group of bands at a time, yields the
    candidate pairs, checked in batches against both signatures (and the texts, for estimates near the
    threshold: ``texts`` gives them by doc id, shingled with ``script``; without it the estimate decides). The
    near pairs go to a table; their ends are ranked in DuckDB, and one pass over the pairs ordered by rank
    builds the stars and the components (Python holds a few integers per clustered text). DuckDB keeps its
    database file in ``directory`` and spills there beyond ``memory_limit``. ``in_memory``: no database file,
    for small inputs (a refresh's few thousand documents), where creating, filling and syncing the file is
    most of the work.
    """

    # Band rows per candidate join: a join's hash table holds about this many (pos, hash) rows, so a large
    # index is joined a few bands at a time (bounded memory) and a small one in a single statement.
    join_rows = 8_000_000

    def __init__(
        self,
        config: MinhashConfig = MinhashConfig(),
        directory: str | Path | None = None,
        memory_limit: str = "512MB",
        threads: int | None = None,
        in_memory: bool = False,
        texts: TextSource | None = None,
        script: str | None = None,
    ) -> None:
        self.config = config
        self.texts = texts
        self.script = script
        self.stats = IndexStats()
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="near-dedup-")) if directory is None else Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        settings = {"memory_limit": memory_limit, "temp_directory": str(self.directory / "spill"),
                    "preserve_insertion_order": False}
        if threads:
            settings["threads"] = threads
        # A database file in the scratch directory rather than an in-memory one: DuckDB can then always
        # evict table blocks to make room for a join (an in-memory database ran out of memory at 157k
        # documents under a 256 MB limit). Filling it costs about 15 us a document more.
        self.con = duckdb.connect(":memory:" if in_memory else str(self.directory / "index.duckdb"), config=settings)
        self.con.execute("CREATE TABLE docs (pos BIGINT, doc_id VARCHAR, content_key VARCHAR, shingled BOOLEAN, "
                         "copies BIGINT)")
        # Signatures go to a flat file beside it, row ``pos`` at byte pos * 8 * num_perm, and are read back
        # for the rows a batch needs: as BLOBs in DuckDB they took far more memory than its memory_limit.
        self._signature_path = self.directory / "signatures.u64"
        self._signatures = open(self._signature_path, "w+b")
        self.con.execute("CREATE TABLE bands (band USMALLINT, pos BIGINT, h UBIGINT)")
        self.added = 0  # documents added
        self._decided = False

    def __enter__(self) -> "NearDuplicateIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the database and remove the scratch files this index created."""
        self.con.close()
        self._signatures.close()
        self._signature_path.unlink(missing_ok=True)
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            for name in ("index.duckdb", "index.duckdb.wal"):
                (self.directory / name).unlink(missing_ok=True)
            shutil.rmtree(self.directory / "spill", ignore_errors=True)

    def add(
        self, doc_ids: Sequence[str], content_keys: Sequence[str], signatures: np.ndarray, shingled: Sequence[bool],
        copies: Sequence[int] | None = None,
    ) -> None:
        """Documents (a batch) with their signatures; ``shingled``: whether the text had any shingle; ``copies``:
        how many documents each one stands for (exact copies removed before, as dbt's ``exact_copies``; 1 by
        default), which counts in its rank and its cluster's size."""
        if self._decided:
            raise RuntimeError("add() after run(): the clusters are decided already")
        count = len(doc_ids)
        if count == 0:
            return
        pos = np.arange(self.added, self.added + count, dtype=np.int64)
        matrix = np.ascontiguousarray(signatures, dtype=_SIGNATURE_DTYPE)
        if matrix.shape != (count, self.config.num_perm):
            raise ValueError(f"expected {count} signatures of {self.config.num_perm} values, got {matrix.shape}")
        shingled = np.asarray(shingled, dtype=bool)
        matrix.tofile(self._signatures)
        copies = np.ones(count, dtype=np.int64) if copies is None else np.asarray(copies, dtype=np.int64)
        if len(copies) != count or (copies < 1).any():
            raise ValueError("copies: one count of at least 1 per document")
        docs = pa.Table.from_arrays(
            [pa.array(pos), pa.array(doc_ids, pa.string()), pa.array(content_keys, pa.string()), pa.array(shingled),
             pa.array(copies)],
            schema=_DOCS_SCHEMA,
        )
        # from_arrow, not register(): register() imports pandas (a quarter of a second) to check the type.
        self.con.from_arrow(docs).insert_into("docs")
        # Indexed now: documents with shingles (the bands of exact copies other than the first are dropped
        # in run(), once every copy is known).
        index = np.flatnonzero(shingled)
        if index.size:
            bands = band_hashes(matrix[index], self.config)  # (documents x bands), stored band by band
            table = pa.Table.from_arrays([
                pa.array(np.repeat(np.arange(self.config.num_bands, dtype=np.uint16), index.size)),
                pa.array(np.tile(pos[index], self.config.num_bands)),
                pa.array(bands.T.ravel()),
            ], names=["band", "pos", "h"])
            self.con.from_arrow(table).insert_into("bands")
        self.added += count

    def run(self, pair_batch: int = 8_192) -> None:
        """Decide every document (once). Candidate pairs are checked ``pair_batch`` at a time (each batch reads
        the signatures of at most two documents per pair)."""
        if self._decided:
            raise RuntimeError("run() was called already")
        self._decided = True
        con, config = self.con, self.config
        # The document that stands for each text: the smallest doc id among its exact copies.
        con.execute("""
            CREATE TABLE nodes AS
            SELECT d.pos, f.node FROM docs d
            JOIN (SELECT content_key, first(pos ORDER BY doc_id, pos) AS node FROM docs GROUP BY content_key) f
              USING (content_key)
        """)
        con.execute("DELETE FROM bands WHERE pos IN (SELECT pos FROM nodes WHERE node <> pos)")
        # Candidate pairs: two texts that share a band hash (rows of two integers: DuckDB sorts and spills
        # them cheaply; signatures are fetched per batch of pairs).
        con.execute("CREATE TABLE pairs (i BIGINT, j BIGINT)")
        (rows,) = con.execute("SELECT count(*) FROM bands").fetchone()
        per_join = max(1, min(config.num_bands, self.join_rows * config.num_bands // max(rows, 1)))
        for first in range(0, config.num_bands, per_join):
            last = min(first + per_join, config.num_bands) - 1
            con.execute(f"""
                INSERT INTO pairs
                SELECT q.pos, c.pos FROM bands q JOIN bands c ON q.band = c.band AND q.h = c.h AND c.pos < q.pos
                WHERE q.band BETWEEN {first} AND {last} AND c.band BETWEEN {first} AND {last}
            """)
        con.execute("DROP TABLE bands")
        # Edges: the pairs that pass the similarity check, with their number of equal signature values.
        con.execute("CREATE TABLE edges (i BIGINT, j BIGINT, w USMALLINT)")
        self._signatures.flush()
        for batch in con.execute("SELECT i, j FROM pairs GROUP BY i, j ORDER BY i, j").fetch_record_batch(
            pair_batch
        ):
            if batch.num_rows == 0:
                continue
            i = batch.column(0).to_numpy()
            j = batch.column(1).to_numpy()
            self.stats.candidate_pairs += len(i)
            both = self._read(np.concatenate((i, j)))  # one read for both sides (the i rows are adjacent)
            equal = both[: len(i)] == both[len(i) :]
            del both
            # A whole band equal (the LSH condition itself: band hashes may collide) ...
            ok = equal.reshape(len(i), config.num_bands, config.rows_per_band).all(axis=2).any(axis=1)
            weight = equal.sum(axis=1).astype(np.uint16)
            del equal
            if config.min_jaccard is not None:  # ... and similar enough.
                ok &= self._near(i, j, weight, ok)
            if ok.any():
                con.from_arrow(pa.table({"i": i[ok], "j": j[ok], "w": weight[ok]})).insert_into("edges")
                self.stats.near_pairs += int(ok.sum())
        con.execute("DROP TABLE pairs")
        self._cluster()

    def _near(self, i: np.ndarray, j: np.ndarray, weight: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        """Which candidate pairs are near: the estimate, and the exact Jaccard where the estimate is close to
        the threshold and the texts are available."""
        config = self.config
        estimate = weight / config.num_perm
        if self.texts is None or config.exact_margin == 0:
            return estimate >= config.min_jaccard
        near = estimate >= config.min_jaccard + config.exact_margin
        unsure = np.flatnonzero(candidate & ~near & (estimate >= config.min_jaccard - config.exact_margin))
        if unsure.size == 0:
            return near
        ends = np.unique(np.concatenate((i[unsure], j[unsure])))
        ids = dict(self.con.execute("SELECT pos, doc_id FROM docs WHERE pos IN (SELECT unnest($1::BIGINT[]))",
                                    [ends.tolist()]).fetchall())
        order = [int(p) for p in ends]
        texts = self.texts([ids[p] for p in order])
        grams = {p: np.unique(shingle_hashes(t, self.script, config.ngram_size)) if t is not None else None
                 for p, t in zip(order, texts)}
        for k in unsure.tolist():
            a, b = grams[int(i[k])], grams[int(j[k])]
            if a is None or b is None:  # a text not found: the estimate decides
                near[k] = estimate[k] >= config.min_jaccard
            else:
                near[k] = jaccard(a, b) >= config.min_jaccard
                self.stats.exact_checks += 1
        return near

    def _cluster(self) -> None:
        """Rank the texts with near neighbours, then one pass over the near pairs ordered by rank: stars
        (each text joins its best-ranked neighbouring representative, or becomes one) and components."""
        con = self.con
        # The rank: the documents it is near (itself with its exact copies, and its near neighbours with all of
        # theirs), its own copies, the sum of its estimated similarities with its neighbours, its doc id.
        con.execute("""
            CREATE TABLE ranked AS
            WITH copies AS (SELECT n.node AS pos, sum(d.copies) AS n FROM nodes n JOIN docs d USING (pos) GROUP BY 1),
            ends AS (SELECT i AS pos, j AS other, w FROM edges UNION ALL SELECT j AS pos, i AS other, w FROM edges),
            degrees AS (SELECT e.pos, sum(c.n) AS near, sum(e.w) AS weight
                        FROM ends e JOIN copies c ON c.pos = e.other GROUP BY e.pos)
            SELECT g.pos,
                   row_number() OVER (ORDER BY g.near + c.n DESC, c.n DESC, g.weight DESC, d.doc_id, g.pos) - 1 AS rank
            FROM degrees g JOIN copies c USING (pos) JOIN docs d USING (pos)
        """)
        pos_of = con.execute("SELECT pos FROM ranked ORDER BY rank").fetchnumpy()["pos"]
        m = len(pos_of)
        self.stats.clustered = m
        center = bytearray(b"\x01") * m
        rep = list(range(m))
        parent = list(range(m))  # union-find; a component's root is its best-ranked text

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        reader = con.execute("""
            SELECT greatest(a.rank, b.rank) AS lo, least(a.rank, b.rank) AS hi
            FROM edges e JOIN ranked a ON a.pos = e.i JOIN ranked b ON b.pos = e.j ORDER BY lo, hi
        """).fetch_record_batch(65_536)
        last, claimed = -1, False
        for batch in reader:
            # Every pair of a text comes before the pairs where it is the better-ranked end, so whether a
            # neighbour is a representative is settled when it is read; its neighbours come best first.
            for lo, hi in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                if lo != last:
                    last, claimed = lo, False
                if not claimed and center[hi]:
                    center[lo], rep[lo], claimed = 0, hi, True
                a, b = find(lo), find(hi)
                if a != b:
                    parent[max(a, b)] = min(a, b)
        lead = [find(k) for k in range(m)]
        con.from_arrow(pa.table({
            "pos": pos_of,
            "rep_pos": pos_of[np.asarray(rep, dtype=np.int64)] if m else pos_of,
            "lead_pos": pos_of[np.asarray(lead, dtype=np.int64)] if m else pos_of,
        })).create("clusters")
        con.execute("""
            CREATE TABLE decided AS
            SELECT n.pos, n.node, coalesce(c.rep_pos, n.node) AS rep_pos, coalesce(c.lead_pos, n.node) AS lead_pos
            FROM nodes n LEFT JOIN clusters c ON c.pos = n.node
        """)
        for table in ("clusters", "ranked", "edges", "nodes"):
            con.execute(f"DROP TABLE {table}")

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """The signatures of document positions ``rows`` (any order, repeats allowed), from the file.

        Read with ``os.pread``, rows close together in one read: a memory map would do, but the kernel maps
        the cached neighbours of each page read along with it, and mapped pages count as resident memory.
        """
        perm = self.config.num_perm
        width = perm * _SIGNATURE_DTYPE.itemsize
        if len(rows) == 0:
            return np.empty((0, perm), dtype=np.uint64)
        unique, inverse = np.unique(rows, return_inverse=True)
        cuts = np.flatnonzero(np.diff(unique) > _READ_GAP) + 1
        firsts = unique[np.concatenate(([0], cuts))]
        lasts = unique[np.concatenate((cuts - 1, [len(unique) - 1]))]
        fd, pread = self._signatures.fileno(), os.pread
        data = b"".join(
            [pread(fd, (b - a + 1) * width, a * width) for a, b in zip(firsts.tolist(), lasts.tolist())]
        )
        spans = np.frombuffer(data, dtype=_SIGNATURE_DTYPE).reshape(-1, perm)
        # Row of each unique position in the concatenated spans.
        span_of = np.searchsorted(firsts, unique, side="right") - 1
        start_row = np.concatenate(([0], np.cumsum(lasts - firsts + 1)[:-1]))
        return spans[start_row[span_of] + unique - firsts[span_of]][inverse].astype(np.uint64)

    def results(self, batch_rows: int = 4_096) -> Iterator[pa.RecordBatch]:
        """One row per document (:data:`RESULT_SCHEMA`; ``pos`` is its rank in :meth:`add`), in no order,
        with its signature."""
        if not self._decided:
            self.run()
        reader = self.con.execute(f"""
            WITH sizes AS (SELECT t.rep_pos, sum(d.copies) AS n FROM decided t JOIN docs d USING (pos) GROUP BY 1)
            SELECT t.pos, d.doc_id,
                   CASE WHEN t.node <> t.pos THEN '{EXACT_DUPLICATE}' WHEN t.rep_pos <> t.pos THEN '{NEAR_DUPLICATE}'
                        ELSE '{KEPT}' END AS kind,
                   CASE WHEN t.rep_pos <> t.pos THEN r.doc_id END AS duplicate_of, d.content_key,
                   NULL::BLOB AS signature, CASE WHEN t.rep_pos = t.pos THEN s.n END AS cluster_size,
                   l.doc_id AS component
            FROM decided t JOIN docs d ON d.pos = t.pos JOIN docs r ON r.pos = t.rep_pos
            JOIN docs l ON l.pos = t.lead_pos LEFT JOIN sizes s ON s.rep_pos = t.pos
        """).fetch_record_batch(batch_rows)
        width = self.config.num_perm * _SIGNATURE_DTYPE.itemsize
        for batch in reader:
            data = self._read(batch.column("pos").to_numpy()).astype(_SIGNATURE_DTYPE).tobytes()
            offsets = np.arange(0, (batch.num_rows + 1) * width, width, dtype=np.int32)
            signatures = pa.Array.from_buffers(pa.binary(), batch.num_rows, [None, pa.py_buffer(offsets),
                                                                            pa.py_buffer(data)])
            batch = pa.RecordBatch.from_arrays(
                [batch.column(k) if name != "signature" else signatures for k, name in enumerate(batch.schema.names)],
                names=batch.schema.names,
            )
            yield batch.cast(RESULT_SCHEMA) if batch.schema != RESULT_SCHEMA else batch


def signature_matrix(column: pa.Array | pa.ChunkedArray, config: MinhashConfig) -> tuple[np.ndarray, np.ndarray]:
    """A binary column of stored signatures as a matrix (no Python objects), and which rows were not null.

    Null rows get the signature of a text without shingles (every value at its maximum).
    """
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    out = np.full((len(column), config.num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    if valid.any():
        out[valid] = _blobs(column.filter(pa.array(valid)), config.num_perm * 8).reshape(-1, config.num_perm)
    return out, valid


def band_key_lists(signatures: pa.Array | pa.ChunkedArray, config: MinhashConfig) -> pa.Array:
    """The :func:`band_hashes` of a binary column of stored signatures, one list of ``num_bands`` keys per row
    (null where the signature is null, or that of a text without shingles, which is near nothing): what a
    document is stored with, so that a refresh finds the documents sharing a band with its new ones by joining
    integers instead of hashing every signature again. Our own hash function, so the stored keys do not change
    with a library version."""
    matrix, valid = signature_matrix(signatures, config)
    valid &= ~(matrix == np.iinfo(np.uint64).max).all(axis=1)
    keys = pa.array(band_hashes(matrix, config).ravel(), pa.uint64())
    offsets = pa.array(np.arange(0, len(valid) * config.num_bands + 1, config.num_bands, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, keys, mask=pa.array(~valid))


def _blobs(column: pa.Array, width: int) -> np.ndarray:
    """The bytes of a binary column of equal-length values, as one uint64 array."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    buffers = column.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=len(column) + 1, offset=column.offset * 4)
    data = np.frombuffer(buffers[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    if len(data) != width * len(column):
        raise ValueError("stored MinHash signatures of unequal length: recompute them")
    return data.view(_SIGNATURE_DTYPE).astype(np.uint64)




def deduplicate(
    docs: Sequence[DedupCandidate],
    script: str | None,
    config: MinhashConfig = MinhashConfig(),
) -> DedupOutcome:
    """Exact and near-duplicate clusters of ``docs`` (one language); one decision per document, same order.

    In memory for the documents given (tests, the demo, the bench's accuracy tables); the assets stream stored
    signatures into :class:`NearDuplicateIndex` directly, with the same rule. A doc id given twice must name
    the same text (its copies may differ in spacing).
    """
    texts: dict[str, str] = {}
    keys = [content_id(d.text) for d in docs]
    first_key: dict[str, str] = {}
    for d, key in zip(docs, keys):
        if first_key.setdefault(d.doc_id, key) != key:
            raise ValueError(f"doc id {d.doc_id!r} is given twice with different texts")
        texts.setdefault(d.doc_id, d.text)
    signatures, has_shingles = MinhashSigner(config).signatures([d.text for d in docs], script)
    decisions: list[DedupDecision | None] = [None] * len(docs)
    sizes: dict[str, int] = {}
    # (an in-memory database below 50,000 documents: creating and syncing a file would be most of the work)
    with NearDuplicateIndex(config, in_memory=len(docs) <= 50_000, texts=lambda ids: [texts.get(i) for i in ids],
                            script=script) as index:
        index.add([d.doc_id for d in docs], keys, signatures, has_shingles)
        for batch in index.results():
            for row in batch.select(["pos", "doc_id", "kind", "duplicate_of", "cluster_size"]).to_pylist():
                if row["kind"] == KEPT:
                    decisions[row["pos"]] = DedupDecision(row["doc_id"], True)
                    sizes[row["doc_id"]] = row["cluster_size"]
                else:
                    decisions[row["pos"]] = DedupDecision(row["doc_id"], False, row["kind"], row["duplicate_of"])
    return DedupOutcome(decisions, dict(sorted(sizes.items())))
