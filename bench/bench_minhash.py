"""MinHash signatures three ways: datasketch, xinst's numpy signer, and rensa (Rust) -- speed and exactness.

    .venv/bin/python bench/bench_minhash.py                  # 2,000 documents per language of the 200k corpus
    .venv/bin/python bench/bench_minhash.py --per-lang 500 --corpus bench/out/corpus/docs-20000-seed-0

Every contender gets the same input: the 64-bit hashes of each document's word 5-gram shingles, as
``core.dedup`` computes them (words split once, SHA-1 per distinct word). Timed (CPU time, one core):

* ``datasketch``: ``MinHash(num_perm=112, seed=1, scheme="affine64", hashfunc=int).update_batch`` per document
  (numpy inside, one call per document);
* ``xinst numpy``: ``MinhashSigner`` over all documents at once (the same affine64 permutations, blocks of
  ~4k shingles x 112 permutations);
* ``rensa``: ``RMinHash.digest_matrix_from_flat_token_hashes`` (its own permutation family, 32-bit values),
  plus the conversion of its result to a numpy matrix.

Exactness: xinst's signatures must equal datasketch's bit for bit (they are the stored signatures). rensa's
cannot (another hash family), so it is compared on what dedup needs: the Jaccard estimate against the true
Jaccard similarity of the shingle sets, and the recall of 28 x 4 banding plus the similarity check on the
corpus's near copies (``kind == near_duplicate``, paired with the document they copy), and the false
candidates among random pairs of the same language; the check as near-dedup makes it now (Jaccard >= 0.6,
estimated, or exact when the estimate is within 0.15 of it: ``MinhashConfig``) and as it was before (the
estimate >= 0.5), side by side.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus as corpus_mod  # noqa: E402  (bench/corpus.py)


def load(corpus: Path, per_lang: int) -> tuple[list[str], list[str], list[str], list[str | None], list[str]]:
    """Texts with their doc ids, generator kinds, copied doc ids and languages, ``per_lang`` per language."""
    texts, ids, kinds, dup_of, langs = [], [], [], [], []
    for code in corpus_mod.read_manifest(corpus)["languages"]:
        for batch in corpus_mod.iter_batches(corpus / code, per_lang, 5_000, ("doc_id", "text", "kind", "dup_of")):
            texts += batch.column("text").to_pylist()
            ids += batch.column("doc_id").to_pylist()
            kinds += batch.column("kind").to_pylist()
            dup_of += batch.column("dup_of").to_pylist()
            langs += [code] * batch.num_rows
    return texts, ids, kinds, dup_of, langs


def shingle_hashes(texts: list[str], langs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Flat shingle hashes of every text and their offsets (``core.dedup``'s, language by language)."""
    from xinst_assets.core.dedup import MinhashConfig, MinhashSigner, _ngram_hashes
    from xinst_assets.core.words import TextBatch

    config = MinhashConfig()
    chunks, counts = [], []
    start = 0
    while start < len(texts):
        end = start
        while end < len(texts) and langs[end] == langs[start] and end - start < 2_000:
            end += 1
        signer = MinhashSigner(config)
        batch = TextBatch(texts[start:end])
        if not batch.shingle_safe.all():
            raise SystemExit("a text needs the slow shingle path (see TextBatch.shingle_safe): another corpus")
        # The word hashes signatures_of() would use, then the shingles.
        hashes = signer._hashes_of(signer.vocabulary.ids(batch.words))
        grams, offsets = _ngram_hashes(hashes, batch.offsets, config.ngram_size)
        chunks.append(grams)
        counts += np.diff(offsets).tolist()
        start = end
    return np.concatenate(chunks), np.concatenate(([0], np.cumsum(counts))).astype(np.int64)


def timed(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def candidates(signatures: np.ndarray, pairs: np.ndarray, truth: np.ndarray, bands: int = 28, rows: int = 4,
               check: float = 0.5, margin: float = 0.0):
    """For each pair (i, j): a whole band equal, and the share of equal values at least ``check`` (within
    ``margin`` of it, the true Jaccard ``truth`` decides, as near-dedup's exact check does)."""
    a, b = signatures[pairs[:, 0]], signatures[pairs[:, 1]]
    equal = a == b
    banded = equal.reshape(len(pairs), bands, rows).all(axis=2).any(axis=1)
    estimate = equal.mean(axis=1)
    near = (estimate >= check + margin) | ((estimate >= check - margin) & (truth >= check))
    return banded & near, estimate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "bench" / "out" / "corpus" / "docs-200000-seed-0")
    parser.add_argument("--per-lang", type=int, default=2_000)
    parser.add_argument("--random-pairs", type=int, default=20_000)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from datasketch import MinHash

    from xinst_assets.core.dedup import MinhashConfig, MinhashSigner

    texts, ids, kinds, dup_of, langs = load(args.corpus, args.per_lang)
    grams, offsets = shingle_hashes(texts, langs)
    docs = len(texts)
    print(f"{docs:,} documents, {len(grams):,} shingles ({len(grams) / docs:.0f} a document), one core")

    def with_datasketch() -> np.ndarray:
        out = np.empty((docs, 112), dtype=np.uint64)
        for d in range(docs):
            m = MinHash(num_perm=112, seed=1, scheme="affine64", hashfunc=int)
            m.update_batch(grams[offsets[d] : offsets[d + 1]].tolist())
            out[d] = m.hashvalues
        return out

    signer = MinhashSigner(MinhashConfig())
    ours, t_ours = timed(lambda: signer._minhash(grams, offsets))
    theirs, t_ds = timed(with_datasketch)
    rows = {"datasketch (update_batch per document)": t_ds, "xinst numpy (MinhashSigner)": t_ours}
    try:
        import rensa

        matrix, t_rensa = timed(
            lambda: rensa.RMinHash.digest_matrix_from_flat_token_hashes(
                grams, offsets.astype(np.uint64), 112, 1
            )
        )
        rensa_sig, t_convert = timed(lambda: np.array(matrix.to_rows(), dtype=np.uint64))
        rows["rensa (digest_matrix_from_flat_token_hashes)"] = t_rensa
        rows["rensa, plus its result as a numpy matrix"] = t_rensa + t_convert
    except ImportError:
        rensa_sig = None
        print("rensa is not installed (pip install rensa): its rows are left out")
    print("\n| signatures | µs/doc | docs/s |")
    print("|---|---:|---:|")
    for name, seconds in rows.items():
        print(f"| {name} | {1e6 * seconds / docs:,.1f} | {docs / seconds:,.0f} |")
    print(f"\nxinst numpy == datasketch, bit for bit: {bool(np.array_equal(ours, theirs))}")

    # Pairs: each near copy with the document it copies; random pairs within a language.
    position = {doc_id: k for k, doc_id in enumerate(ids)}
    near = np.array(
        [(position[o], k) for k, (kind, o) in enumerate(zip(kinds, dup_of)) if kind == "near_duplicate" and o in position]
    )
    rng = np.random.default_rng(0)
    by_lang: dict[str, list[int]] = {}
    for k, code in enumerate(langs):
        by_lang.setdefault(code, []).append(k)
    random_pairs = []
    for members in by_lang.values():
        picks = rng.choice(members, size=(args.random_pairs // len(by_lang), 2))
        random_pairs += [p for p in picks.tolist() if p[0] != p[1]]
    random_pairs = np.array(random_pairs)

    def true_jaccard(pairs: np.ndarray) -> np.ndarray:
        sets = {}

        def shingles(d: int) -> set:
            if d not in sets:
                sets[d] = set(grams[offsets[d] : offsets[d + 1]].tolist())
            return sets[d]

        return np.array([len(shingles(a) & shingles(b)) / max(len(shingles(a) | shingles(b)), 1) for a, b in pairs])

    truth_near, truth_random = true_jaccard(near), true_jaccard(random_pairs)
    print(f"\n{len(near):,} near copies (true Jaccard: median {np.median(truth_near):.2f}, "
          f"{(truth_near >= 0.5).mean():.1%} at 0.5 or more); {len(random_pairs):,} random pairs "
          f"(true Jaccard: max {truth_random.max():.2f})")
    config = MinhashConfig()
    checks = {f"J >= {config.min_jaccard}, exact within {config.exact_margin} (now)": (config.min_jaccard,
                                                                                         config.exact_margin),
              "estimate >= 0.5 (before)": (0.5, 0.0)}
    print("\n| signatures | check | near copies found | of those with true J >= 0.6 | random pairs found "
          "| mean abs. error of the J estimate (near) |")
    print("|---|---|---:|---:|---:|---:|")
    contenders = {"datasketch / xinst numpy (identical)": ours}
    if rensa_sig is not None:
        contenders["rensa"] = rensa_sig
    for name, signatures in contenders.items():
        for check_name, (check, margin) in checks.items():
            found, estimate = candidates(signatures, near, truth_near, check=check, margin=margin)
            found_random, _ = candidates(signatures, random_pairs, truth_random, check=check, margin=margin)
            high = truth_near >= 0.6
            print(f"| {name} | {check_name} | {found.mean():.1%} | {found[high].mean():.1%} | {found_random.sum()} "
                  f"| {np.abs(estimate - truth_near).mean():.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
