"""A synthetic web corpus for the filtering benchmark, recombined from the clean documents of the sample.

    .venv/bin/python bench/corpus.py --docs 1000000 [--seed 0] [--out bench/out/corpus]

The embedded sample has a few dozen documents per language, far too few to time a filter. This module
splits the sample's ``clean`` documents into titles and sentences (per language) and recombines sentences of
ONE language into new documents:

* lengths drawn log-normally around 1,000 characters (X-Instruction's responses average 1,000-1,300) and
  bounded to 200-3,000 characters; an optional title line, then paragraphs of 1-4 sentences;
* about 5% exact copies and 5% near copies (1-3 word edits) of documents written shortly before;
* about 3% documents in another language of the sample (the partition's LID rejections).

Documents are streamed to Parquet shards, one folder per language (the layout of a partitioned raw source),
so that a corpus of a million documents never sits in memory. Columns: ``doc_id`` (sorts in writing order),
``text``, ``kind`` (original, exact_duplicate, near_duplicate, foreign) and ``dup_of`` (the doc id copied).
A corpus is reused when its manifest says it is complete; its first ``k`` documents of a language are a
valid smaller corpus (copies always point backwards), which is how the benchmark takes 20k and 100k subsets.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "xinst_assets" / "data" / "sample"
DEFAULT_OUT = ROOT / "bench" / "out" / "corpus"

MIN_CHARS, MAX_CHARS = 200, 3_000
# Median ~1,000 characters, sigma 0.6: the bulk falls within 550-1,800 (one sigma), and 8% hit the bounds.
MEDIAN_CHARS, SIGMA = 1_000, 0.6
EXACT_SHARE, NEAR_SHARE, FOREIGN_SHARE = 0.05, 0.05, 0.03
# Copies are taken from the last documents written in the same language: a bounded memory of recent texts.
RECENT = 5_000
SHARD_DOCS = 50_000
ROW_GROUP = 5_000
TITLE_SHARE = 0.6  # documents that start with a title line

SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("text", pa.string()), ("kind", pa.string()), ("dup_of", pa.string())]
)
_TERMINAL = ".!?…।॥۔؟"
_SENTENCE_END = re.compile(r"(?<=[.!?…।॥۔؟])[\"'”’»)]*\s+")


@dataclass(frozen=True)
class Pools:
    """The building blocks of one language: titles (lines without a full stop) and sentences."""

    titles: tuple[str, ...]
    sentences: tuple[str, ...]
    joiner: str  # between sentences of a paragraph


def clean_documents(sample: Path = SAMPLE) -> dict[str, list[str]]:
    """Texts labelled ``clean`` in the sample, per language (every language with raw data and labels)."""
    out: dict[str, list[str]] = {}
    for labels_path in sorted((sample / "labels").glob("*.jsonl")):
        code = labels_path.stem
        labels = {}
        for line in labels_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                labels[record["url"]] = record["label"]
        texts = []
        for shard in sorted((sample / "raw" / code).glob("*.jsonl")):
            for line in shard.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    if labels.get(row.get("url")) == "clean":
                        texts.append(row["text"])
        if texts:
            out[code] = texts
    if not out:
        raise FileNotFoundError(f"no labelled clean documents under {sample}/raw and {sample}/labels")
    return out


def split_pools(texts: list[str], code: str) -> Pools:
    """Cut clean documents into titles and sentences. Thai marks no sentence end: its spaces separate them."""
    titles: list[str] = []
    sentences: list[str] = []
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            if code == "th":
                parts = [p for p in line.split(" ") if p]
                if len(parts) == 1 and len(line) < 120:
                    titles.append(line)
                else:
                    sentences += _thai_sentences(parts)
            elif not line.rstrip("\"'”’»)").endswith(tuple(_TERMINAL)) and len(line) < 120:
                titles.append(line)
            else:
                sentences += [s.strip() for s in _SENTENCE_END.split(line) if s.strip()]
    if len(sentences) < 20:
        raise ValueError(f"{code}: only {len(sentences)} sentences in the clean sample, too few to recombine")
    return Pools(tuple(dict.fromkeys(titles)), tuple(dict.fromkeys(sentences)), " ")


# A space ends a Thai phrase, often a clause rather than a sentence: consecutive phrases are merged into
# pieces of at least this many characters, so that recombined lines look like the sample's lines, not lists.
THAI_PIECE_CHARS = 80


def _thai_sentences(phrases: list[str]) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    for phrase in phrases:
        current.append(phrase)
        if sum(len(p) + 1 for p in current) >= THAI_PIECE_CHARS:
            pieces.append(" ".join(current))
            current = []
    if current:
        if pieces:
            pieces[-1] += " " + " ".join(current)
        else:
            pieces.append(" ".join(current))
    return pieces


def _target_length(rng: random.Random) -> int:
    return int(min(MAX_CHARS, max(MIN_CHARS, rng.lognormvariate(math.log(MEDIAN_CHARS), SIGMA))))


def compose(pools: Pools, rng: random.Random) -> str:
    """One document of 200-3,000 characters: maybe a title, then paragraphs of 1-4 distinct sentences."""
    target = _target_length(rng)
    lines: list[str] = []
    if pools.titles and rng.random() < TITLE_SHARE:
        lines.append(rng.choice(pools.titles))
    order = rng.sample(range(len(pools.sentences)), len(pools.sentences))  # no sentence twice in a document
    size = sum(len(x) + 1 for x in lines)
    paragraph: list[str] = []
    room = rng.randint(1, 4)
    for index in order:
        sentence = pools.sentences[index]
        if size + len(sentence) + 1 > MAX_CHARS:
            continue
        paragraph.append(sentence)
        size += len(sentence) + 1
        if len(paragraph) == room:
            lines.append(pools.joiner.join(paragraph))
            paragraph, room = [], rng.randint(1, 4)
        if size >= target:
            break
    if paragraph:
        lines.append(pools.joiner.join(paragraph))
    return "\n".join(lines)


def near_copy(text: str, pools: Pools, rng: random.Random) -> str:
    """The text with 1-3 small word edits (substitute, delete or insert one word), a typical re-post."""
    words = text.split(" ")
    vocabulary = rng.choice(pools.sentences).split(" ")
    for _ in range(rng.randint(1, 3)):
        if len(words) < 3:
            break
        at = rng.randrange(1, len(words) - 1)
        edit = rng.random()
        size = sum(len(w) + 1 for w in words)
        if edit < 0.4:
            words[at] = rng.choice(vocabulary)
        elif edit < 0.7 and size > MIN_CHARS + 40:
            del words[at]
        elif size < MAX_CHARS - 40:
            words.insert(at, rng.choice(vocabulary))
    return " ".join(words)


def generate(n_docs: int, seed: int, pools: dict[str, Pools]) -> Iterator[tuple[str, dict]]:
    """``(lang, row)`` for ``n_docs`` documents, languages round-robin, with copies of recent documents."""
    rng = random.Random(seed)
    codes = sorted(pools)
    recent: dict[str, deque] = {code: deque(maxlen=RECENT) for code in codes}
    counters = {code: 0 for code in codes}
    for i in range(n_docs):
        code = codes[i % len(codes)]
        doc_id = f"{code}-{counters[code]:08d}"
        counters[code] += 1
        draw = rng.random()
        kind, dup_of = "original", None
        if draw < EXACT_SHARE and recent[code]:
            dup_of, text = rng.choice(recent[code])
            kind = "exact_duplicate"
        elif draw < EXACT_SHARE + NEAR_SHARE and recent[code]:
            dup_of, source = rng.choice(recent[code])
            text, kind = near_copy(source, pools[code], rng), "near_duplicate"
        elif draw < EXACT_SHARE + NEAR_SHARE + FOREIGN_SHARE and len(codes) > 1:
            other = rng.choice([c for c in codes if c != code])
            text, kind = compose(pools[other], rng), "foreign"
        else:
            text = compose(pools[code], rng)
            recent[code].append((doc_id, text))
        yield code, {"doc_id": doc_id, "text": text, "kind": kind, "dup_of": dup_of}


class _ShardWriter:
    """Parquet shards of one language: ``part-00000.parquet`` ..., ``SHARD_DOCS`` rows each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        self.in_shard = 0
        self.shard = 0
        self.writer: pq.ParquetWriter | None = None

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        if self.writer is None:
            path = self.folder / f"part-{self.shard:05d}.parquet"
            self.writer = pq.ParquetWriter(path, SCHEMA, compression="zstd")
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=SCHEMA), row_group_size=ROW_GROUP)
        self.in_shard += len(self.rows)
        self.rows = []
        if self.in_shard >= SHARD_DOCS:
            self.close()
            self.shard += 1
            self.in_shard = 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def corpus_dir(out: Path, n_docs: int, seed: int) -> Path:
    return out / f"docs-{n_docs}-seed-{seed}"


def build_corpus(n_docs: int, seed: int = 0, out: Path = DEFAULT_OUT, sample: Path = SAMPLE) -> Path:
    """Write the corpus (or reuse a complete one) and return its folder (one sub-folder per language)."""
    folder = corpus_dir(out, n_docs, seed)
    manifest = folder / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("complete"):
        return folder
    if folder.exists():
        for old in folder.glob("*/*.parquet"):
            old.unlink()
    pools = {code: split_pools(texts, code) for code, texts in clean_documents(sample).items()}
    writers = {code: _ShardWriter(folder / code) for code in pools}
    kinds: dict[str, int] = {}
    chars = 0
    started = time.perf_counter()
    for code, row in generate(n_docs, seed, pools):
        writers[code].add(row)
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
        chars += len(row["text"])
    for writer in writers.values():
        writer.flush()
        writer.close()
    info = {
        "complete": True,
        "docs": n_docs,
        "seed": seed,
        "languages": sorted(pools),
        "kinds": kinds,
        "mean_chars": round(chars / max(n_docs, 1), 1),
        "pool_sizes": {c: {"titles": len(p.titles), "sentences": len(p.sentences)} for c, p in pools.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    manifest.write_text(json.dumps(info, indent=2))
    return folder


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def iter_batches(
    folder: Path, limit: int | None, batch_size: int, columns=("doc_id", "text")
) -> Iterator[pa.RecordBatch]:
    """Record batches of one language folder, in writing order, stopping after ``limit`` documents."""
    left = limit
    for shard in sorted(folder.glob("*.parquet")):
        # pre_buffer=False: pyarrow's default keeps every row group read until the file is closed.
        reader = pq.ParquetFile(shard, pre_buffer=False)
        for batch in reader.iter_batches(batch_size=batch_size, columns=list(columns)):
            if left is not None:
                if left <= 0:
                    return
                if batch.num_rows > left:
                    batch = batch.slice(0, left)
                left -= batch.num_rows
            yield batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--docs", type=int, default=200_000, help="documents in all (split evenly over languages)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.docs < 1:
        parser.error("--docs must be positive")
    folder = build_corpus(args.docs, args.seed, args.out)
    print(folder)
    print(json.dumps(read_manifest(folder), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
