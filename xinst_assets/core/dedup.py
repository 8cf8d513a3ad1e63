"""Exact and near-duplicate removal within one language, global and incremental.

* Exact duplicates: documents whose normalised text is identical (same :func:`content_id`).
* Near duplicates: MinHash over word 5-gram shingles (words from :func:`split_words`, so Thai works), with
  LSH banding and a similarity check on each candidate pair. The shingles and signature size are
  datatrove's; the banding is tuned for short documents (see MinhashConfig). Signatures are those of
  datasketch's ``MinHash(scheme="affine64")``; the LSH index is not held in memory but kept in a DuckDB
  scratch database (:class:`NearDuplicateIndex`): band hashes are joined to find candidate pairs, which are
  then checked against the stored signatures, so memory stays bounded however many documents a language has.

Documents are visited in a stable order: representatives kept by earlier runs first, then new documents by
first-seen time, then publication time, then doc id. The first document of a cluster is its representative and
stays so in later runs (its signature is stored and given back through ``previous``); every later member is
dropped with ``duplicate_of`` = the representative's doc id. Clustering is transitive within a run (a document
near a dropped duplicate joins that duplicate's cluster), as with datatrove's union-find.
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
from typing import Iterable, Iterator, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from xinst_assets.core.text import content_id, normalise
from xinst_assets.core.words import TextBatch, Vocabulary, split_words

EXACT_DUPLICATE = "dedup_exact_duplicate"
NEAR_DUPLICATE = "dedup_near_duplicate"

# datasketch's 64-bit permutation scheme: hash values are uint64, which is how signatures are stored.
_SCHEME = "affine64"
_SIGNATURE_DTYPE = np.dtype("<u8")
# Signature rows at most this far apart are read from the index's file in one read (NearDuplicateIndex._read):
# only neighbours, as candidate pairs point all over the file and the gaps would be read too.
_READ_GAP = 1


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


def _order_key(doc: DedupCandidate, index: int) -> tuple:
    last = "\uffff"  # missing timestamps sort after every ISO 8601 string
    return (doc.seen_at or last, doc.published_at or last, doc.doc_id, index)


# --- The index in DuckDB ----------------------------------------------------------------------------------

KEPT = "kept"  # a document kept as a new representative (or without words: kept, never merged)
REGIVEN = "regiven"  # a stored representative given again: kept, unchanged


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


_DOCS_SCHEMA = pa.schema(
    [
        ("pos", pa.int64()),
        ("doc_id", pa.string()),
        ("content_key", pa.string()),
        ("shingled", pa.bool_()),
        ("previous", pa.bool_()),
        ("base_size", pa.int64()),
    ]
)
RESULT_SCHEMA = pa.schema(
    [
        ("pos", pa.int64()),
        ("doc_id", pa.string()),
        ("kind", pa.string()),  # kept, regiven, dedup_exact_duplicate, dedup_near_duplicate
        ("duplicate_of", pa.string()),
        ("content_key", pa.string()),
        ("signature", pa.binary()),
        ("cluster_size", pa.int64()),  # for kept and regiven documents: the cluster size after this run
    ]
)


class NearDuplicateIndex:
    """Exact and near-duplicate decisions for a stream of documents, in a DuckDB scratch database.

    Feed the representatives kept by earlier runs (:meth:`add_previous`, in their rank order: earlier ones
    win ties) and then this run's documents in visiting order (:meth:`add`, signatures already computed);
    :meth:`run` decides, and :meth:`results` streams one row per new document. The decisions are those of
    the in-memory algorithm described in the module docstring:

    * a new document whose doc id and content key are a stored representative's is that representative;
    * a document whose content key appeared before is an exact duplicate of the earlier document's cluster;
    * otherwise, with shingles, it is a near duplicate of the earliest-ranked cluster among the earlier
      indexed documents (representatives and near duplicates alike: clusters are transitive) that share a
      whole LSH band with it and pass the ``min_jaccard`` check; and it is indexed in turn.

    Band hashes of every indexed document go to one DuckDB table (band, position, hash); a join on band and
    hash, over a group of bands at a time, yields the candidate pairs, which are checked in batches against
    both signatures (streamed, ordered by the later document). Python then holds one int64 per new document
    (its cluster); DuckDB keeps its database file in ``directory`` and spills there beyond ``memory_limit``.
    Previous representatives cost memory only inside DuckDB. ``in_memory``: no database file, for small
    inputs (a refresh's few thousand documents), where creating, filling and syncing the file is most of
    the work.
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
    ) -> None:
        self.config = config
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
        self.con.execute(
            "CREATE TABLE docs (pos BIGINT, doc_id VARCHAR, content_key VARCHAR, "
            "shingled BOOLEAN, previous BOOLEAN, base_size BIGINT)"
        )
        # Signatures go to a flat file beside it, row ``pos`` at byte pos * 8 * num_perm, and are read back
        # for the rows a batch needs: as BLOBs in DuckDB they took far more memory than its memory_limit.
        self._signature_path = self.directory / "signatures.u64"
        self._signatures = open(self._signature_path, "w+b")
        self.con.execute("CREATE TABLE bands (band USMALLINT, pos BIGINT, h UBIGINT)")
        self.previous = 0  # representatives added
        self.added = 0  # new documents added
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

    def add_previous(
        self, doc_ids: Sequence[str], content_keys: Sequence[str], signatures: Sequence[bytes] | np.ndarray,
        cluster_sizes: Sequence[int],
    ) -> None:
        """Representatives of earlier runs (a batch), in rank order; all must come before :meth:`add`.

        ``signatures``: a matrix, or the stored bytes of each (:func:`signature_to_bytes`)."""
        if self.added:
            raise RuntimeError("add every previous representative before the new documents")
        if isinstance(signatures, np.ndarray):
            matrix = signatures
        elif len(signatures):
            matrix = np.stack([signature_from_bytes(s, self.config) for s in signatures])
        else:
            matrix = np.empty((0, self.config.num_perm), dtype=np.uint64)
        self._insert(doc_ids, content_keys, matrix, np.ones(len(doc_ids), dtype=bool), True, cluster_sizes)
        self.previous += len(doc_ids)

    def add(
        self, doc_ids: Sequence[str], content_keys: Sequence[str], signatures: np.ndarray, shingled: Sequence[bool]
    ) -> None:
        """New documents (a batch), in visiting order; ``shingled``: whether the text had any shingle."""
        self._insert(doc_ids, content_keys, signatures, np.asarray(shingled, dtype=bool), False,
                     np.ones(len(doc_ids), dtype=np.int64))
        self.added += len(doc_ids)

    def _insert(self, doc_ids, content_keys, matrix: np.ndarray, shingled: np.ndarray, previous: bool,
                sizes) -> None:
        count = len(doc_ids)
        if count == 0:
            return
        start = self.previous + self.added
        pos = np.arange(start, start + count, dtype=np.int64)
        matrix = np.ascontiguousarray(matrix, dtype=_SIGNATURE_DTYPE)
        if matrix.shape != (count, self.config.num_perm):
            raise ValueError(f"expected {count} signatures of {self.config.num_perm} values, got {matrix.shape}")
        matrix.tofile(self._signatures)
        docs = pa.Table.from_arrays(
            [pa.array(pos), pa.array(doc_ids, pa.string()), pa.array(content_keys, pa.string()),
             pa.array(shingled), pa.array(np.full(count, previous)), pa.array(np.asarray(sizes, dtype=np.int64))],
            schema=_DOCS_SCHEMA,
        )
        # from_arrow, not register(): register() imports pandas (a quarter of a second) to check the type.
        self.con.from_arrow(docs).insert_into("docs")
        # Indexed now: previous representatives, and new documents with shingles (whether they end up as
        # exact duplicates is decided later: their bands are dropped then).
        index = np.flatnonzero(shingled)
        if index.size:
            bands = band_hashes(matrix[index], self.config)  # (documents x bands), stored band by band
            table = pa.Table.from_arrays([
                pa.array(np.repeat(np.arange(self.config.num_bands, dtype=np.uint16), index.size)),
                pa.array(np.tile(pos[index], self.config.num_bands)),
                pa.array(bands.T.ravel()),
            ], names=["band", "pos", "h"])
            self.con.from_arrow(table).insert_into("bands")

    def run(self, pair_batch: int = 8_192) -> None:
        """Decide every new document (once). Candidate pairs are checked ``pair_batch`` at a time (each
        batch reads the signatures of at most two documents per pair)."""
        if self._decided:
            raise RuntimeError("run() was called already")
        self._decided = True
        con, previous = self.con, self.previous
        # Exact duplicates and stored representatives given again.
        con.execute(f"""
            CREATE TABLE state AS
            WITH firsts AS (SELECT content_key, min(pos) AS first_pos FROM docs GROUP BY content_key),
            stored AS (SELECT doc_id, content_key, min(pos) AS stored_pos FROM docs WHERE previous GROUP BY ALL),
            regiven AS (
                SELECT min(d.pos) AS pos, any_value(s.stored_pos) AS stored_pos
                FROM docs d JOIN stored s USING (doc_id, content_key)
                WHERE NOT d.previous GROUP BY d.doc_id, d.content_key)
            SELECT d.pos, f.first_pos, r.pos IS NOT NULL AS regiven,
                   r.pos IS NULL AND f.first_pos = d.pos AND d.shingled AS indexed,
                   CASE WHEN r.pos IS NOT NULL THEN r.stored_pos END AS stored_pos
            FROM docs d JOIN firsts f USING (content_key) LEFT JOIN regiven r USING (pos)
            WHERE d.pos >= {previous}
        """)
        # Candidate pairs: a new indexed document and an earlier indexed one that share a band hash (rows of
        # two integers: DuckDB sorts and spills them cheaply; signatures are fetched per batch of pairs).
        con.execute("CREATE TABLE pairs (i BIGINT, j BIGINT)")
        con.execute(f"DELETE FROM bands WHERE pos >= {previous} AND pos IN (SELECT pos FROM state WHERE NOT indexed)")
        (rows,) = con.execute("SELECT count(*) FROM bands").fetchone()
        per_join = max(1, min(self.config.num_bands, self.join_rows * self.config.num_bands // max(rows, 1)))
        for first in range(0, self.config.num_bands, per_join):
            last = min(first + per_join, self.config.num_bands) - 1
            con.execute(f"""
                INSERT INTO pairs
                SELECT q.pos, c.pos FROM bands q JOIN bands c ON q.band = c.band AND q.h = c.h AND c.pos < q.pos
                WHERE q.pos >= {previous} AND q.band BETWEEN {first} AND {last} AND c.band BETWEEN {first} AND {last}
            """)
        con.execute("DROP TABLE bands")
        rep = np.arange(previous, previous + self.added, dtype=np.int64)  # cluster of each new document
        config = self.config
        self._signatures.flush()
        for batch in con.execute("SELECT i, j FROM pairs GROUP BY i, j ORDER BY i, j").fetch_record_batch(
            pair_batch
        ):
            if batch.num_rows == 0:
                continue
            i = batch.column(0).to_numpy()
            j = batch.column(1).to_numpy()
            both = self._read(np.concatenate((i, j)))  # one read for both sides (the i rows are adjacent)
            equal = both[: len(i)] == both[len(i) :]
            del both
            # A whole band equal (the LSH condition itself: band hashes may collide) ...
            ok = equal.reshape(len(i), config.num_bands, config.rows_per_band).all(axis=2).any(axis=1)
            if config.min_jaccard is not None:
                # ... and the share of equal values, an estimate of the Jaccard similarity, high enough.
                ok &= equal.mean(axis=1) >= config.min_jaccard
            # Later documents after earlier ones (pairs come ordered by i, and j < i): each i takes the
            # earliest cluster among the documents it matches, which are all decided already.
            for a, b in zip(i[ok].tolist(), j[ok].tolist()):
                cluster = rep[b - previous] if b >= previous else b
                if cluster < rep[a - previous]:
                    rep[a - previous] = cluster
        con.execute("DROP TABLE pairs")
        con.execute("CREATE TABLE clusters (pos BIGINT, rep BIGINT)")
        con.from_arrow(pa.table({"pos": np.arange(previous, previous + self.added), "rep": rep})).insert_into(
            "clusters"
        )
        del rep
        con.execute("""
            CREATE TABLE decided AS
            SELECT s.pos,
                   CASE WHEN s.regiven THEN 'regiven'
                        WHEN s.first_pos < s.pos THEN 'dedup_exact_duplicate'
                        WHEN c.rep < s.pos THEN 'dedup_near_duplicate'
                        ELSE 'kept' END AS kind,
                   CASE WHEN s.regiven THEN NULL
                        WHEN s.first_pos < s.pos THEN coalesce(f.rep, s.first_pos)
                        WHEN c.rep < s.pos THEN c.rep END AS rep_pos,
                   coalesce(s.stored_pos, s.pos) AS cluster_pos  -- whose cluster a kept document stands for
            FROM state s JOIN clusters c ON c.pos = s.pos LEFT JOIN clusters f ON f.pos = s.first_pos
        """)
        con.execute("DROP TABLE clusters")

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
        """One row per new document (:data:`RESULT_SCHEMA`; ``pos`` is its visiting rank), in no order."""
        if not self._decided:
            self.run()
        reader = self.con.execute("""
            WITH members AS (SELECT rep_pos, count(*) AS n FROM decided WHERE rep_pos IS NOT NULL GROUP BY 1)
            SELECT t.pos, d.doc_id, t.kind, r.doc_id AS duplicate_of, d.content_key, NULL::BLOB AS signature,
                   CASE WHEN t.kind IN ('kept', 'regiven') THEN c.base_size + coalesce(m.n, 0) END AS cluster_size
            FROM decided t JOIN docs d ON d.pos = t.pos
            JOIN docs c ON c.pos = t.cluster_pos
            LEFT JOIN docs r ON r.pos = t.rep_pos
            LEFT JOIN members m ON m.rep_pos = t.cluster_pos
        """).fetch_record_batch(batch_rows)
        self._signatures.flush()
        width = self.config.num_perm * 8
        for batch in reader:
            # The signatures of the documents kept as new representatives (to store for the next run).
            kinds = batch.column("kind").to_numpy(zero_copy_only=False)
            rows = batch.column("pos").to_numpy()[kinds == KEPT]
            data = self._read(rows).astype(_SIGNATURE_DTYPE).tobytes()
            offsets = np.zeros(len(kinds) + 1, dtype=np.int32)
            offsets[1:] = np.cumsum(np.where(kinds == KEPT, width, 0))
            validity = pa.array(kinds == KEPT).buffers()[1]
            signatures = pa.Array.from_buffers(
                pa.binary(), len(kinds), [validity, pa.py_buffer(offsets), pa.py_buffer(data)]
            )
            batch = pa.RecordBatch.from_arrays(
                [batch.column(k) if name != "signature" else signatures for k, name in enumerate(batch.schema.names)],
                names=batch.schema.names,
            )
            yield batch.cast(RESULT_SCHEMA) if batch.schema != RESULT_SCHEMA else batch

    def grown_previous(self) -> list[tuple[str, int]]:
        """Previous representatives that gained members in this run: (doc id, new cluster size), by rank."""
        if not self._decided:
            self.run()
        return self.con.execute("""
            SELECT d.doc_id, d.base_size + count(*) FROM decided t JOIN docs d ON d.pos = t.rep_pos
            WHERE t.rep_pos < ? GROUP BY d.pos, d.doc_id, d.base_size ORDER BY d.pos
        """, [self.previous]).fetchall()


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
    (null where the signature is null): what a representative is stored with, so that a refresh finds the
    representatives sharing a band with its new documents by joining integers instead of hashing every
    signature again. Our own hash function, so the stored keys do not change with a library version."""
    matrix, valid = signature_matrix(signatures, config)
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
    previous: Iterable[StoredRepresentative] = (),
) -> DedupOutcome:
    """Deduplicate ``docs`` against each other and against the representatives of earlier runs.

    Returns one decision per input document (same order). A candidate whose doc id and content equal a stored
    representative's is that representative (kept, no new member): running a batch twice changes nothing.
    In memory for the documents given (tests, the demo, the bench's accuracy table); the assets stream
    signatures into :class:`NearDuplicateIndex` directly.
    """
    previous = list(previous)
    order = sorted(range(len(docs)), key=lambda i: _order_key(docs[i], i))
    ordered = [docs[i] for i in order]
    signatures, has_shingles = MinhashSigner(config).signatures([d.text for d in ordered], script)
    with NearDuplicateIndex(config) as index:
        if previous:
            index.add_previous(
                [r.doc_id for r in previous], [r.content_key for r in previous],
                [r.signature for r in previous], [r.cluster_size for r in previous],
            )
        index.add([d.doc_id for d in ordered], [content_id(d.text) for d in ordered], signatures, has_shingles)
        decisions: dict[int, DedupDecision] = {}
        sizes: dict[str, int] = {}
        new_reps: list[StoredRepresentative] = []
        for batch in index.results():
            for row in batch.to_pylist():
                i = order[row["pos"] - index.previous]
                kind = row["kind"]
                if kind in (KEPT, REGIVEN):
                    decisions[i] = DedupDecision(row["doc_id"], True)
                    if kind == KEPT:
                        sizes[row["doc_id"]] = row["cluster_size"]
                        new_reps.append(StoredRepresentative(
                            row["doc_id"], row["content_key"], row["signature"], row["cluster_size"]))
                else:
                    decisions[i] = DedupDecision(row["doc_id"], False, kind, row["duplicate_of"])
        grown = dict(index.grown_previous())
    # Cluster sizes of the representatives that are new or gained members, in rank order (stored ones first).
    rank = {r.doc_id: k for k, r in enumerate(previous)}
    cluster_sizes = {doc_id: size for doc_id, size in grown.items()}
    for rep in new_reps:
        cluster_sizes[rep.doc_id] = sizes[rep.doc_id]
    ordered_sizes = dict(sorted(cluster_sizes.items(), key=lambda item: rank.get(item[0], len(rank))))
    return DedupOutcome([decisions[i] for i in range(len(docs))], ordered_sizes, new_reps)
