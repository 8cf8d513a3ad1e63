"""Speed, memory and accuracy of stage 2 (language_filtered_text) against datatrove and the fastText floor.

    .venv/bin/python bench/bench_filter.py                      # 100k and 1M docs, datatrove on 20k
    .venv/bin/python bench/bench_filter.py --quick              # 20k docs, datatrove on 5k
    .venv/bin/python bench/bench_filter.py --sizes 100000 --datatrove-docs 20000
    .venv/bin/python bench/bench_filter.py --profile 20000      # cProfile of xinst's two phases only

What it does:

1. Accuracy on the labelled sample (xinst_assets/data/sample/{raw,labels}): ``run_language_filter`` then
   ``evaluate_on_labels`` for every language present: recall of the clean documents, precision of the kept
   set.
2. Builds (or reuses) a synthetic corpus with bench/corpus.py: sentences of the clean sample recombined into
   documents of 200-3,000 characters, ~5% exact and ~5% near copies, ~3% other-language documents, one
   folder of Parquet shards per language. Smaller sizes are prefixes of the largest corpus.
3. Times each contender in its own subprocess pinned to one core (``sched_setaffinity``, every thread pool
   set to 1), streaming the corpus in batches of 2,000 documents, and reports wall time and CPU time (work
   only: imports and model loading are excluded, reading and writing are included) and peak RSS
   (``VmHWM`` of the child, reset at its start: the interpreter, the libraries and the work). docs/s per core is
   computed from the CPU time, which a busy shared machine does not inflate the way it inflates wall time:

   * ``fastText raw``: ``model.predict`` on the one-line texts, k=2 - the bare floor;
   * ``fastText floor``: ``LanguageIdentifier.predict`` (same preprocessing: newlines to spaces, first 2,000
     characters; plus the label mapping) - the floor the goal refers to;
   * ``xinst filter``: what the ``document_signals`` asset does per batch (``filter_documents``: length, LID,
     quality), writing the verdicts and the survivors to Parquet;
   * ``xinst dedup``: what ``language_filtered_text`` does (``deduplicate`` over all survivors of a language,
     loaded at once, as the asset loads them from DuckDB), writing the decisions;
   * ``datatrove filter``: ParquetReader -> LanguageFilter -> GopherQualityFilter -> FineWebQualityFilter ->
     ParquetWriter, per language with its lang_Script code and the registry's LID threshold, the same local
     lid.176.ftz (datatrove's own default downloads lid.176.bin);
   * ``datatrove minhash``: its four MinHash stages (signatures, 14 buckets, clusters, filter) on local
     folders, over the survivors of its filters.

   The xinst rows call the core functions the assets call, without Dagster and DuckDB (no warehouse reads and
   writes, no dbt exact-dedup model: ``deduplicate`` removes exact copies itself).
   ``... stage`` rows add the two phases (docs/s over the input documents; peak RSS is the larger one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus as corpus_mod  # noqa: E402  (bench/corpus.py)

BATCH_DOCS = 2_000  # xinst_assets.assets.filtering.BATCH_DOCS: the batch the document_signals asset uses
# memory_limit of the DuckDB near-dedup index in the dedup child (the asset uses 1GB; a list, set by main).
DEDUP_MEMORY = ["128MB"]
DEFAULT_OUT = ROOT / "bench" / "out"
# The raw-predict row only shows what the label mapping of LanguageIdentifier costs; at 1M documents it would
# add minutes to the run and tell nothing new.
RAW_FLOOR_MAX_DOCS = 200_000
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "RAYON_NUM_THREADS": "1",
    "POLARS_MAX_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONHASHSEED": "0",
}
# datatrove's 3-letter language codes (its word tokenizers and filter settings are keyed by them).
DATATROVE_CODES = {
    "fi": "fin_Latn",
    "id": "ind_Latn",
    "th": "tha_Thai",
    "tr": "tur_Latn",
    "vi": "vie_Latn",
    "bn": "ben_Beng",
    "hi": "hin_Deva",
    "sw": "swh_Latn",
    "ta": "tam_Taml",
    "ur": "urd_Arab",
}
# Gopher's stop-word rule needs stop words of the language (its defaults are English, which drop every other
# language). FineWeb-2 takes the most frequent words of each language; here: the 8 most frequent words of the
# sample's clean documents (datatrove's own tokenizer), as many as Gopher's English list.
STOP_WORDS_PER_LANGUAGE = 8


# ----------------------------------------------------------------------------------------------- children


def _reset_peak_rss() -> None:
    """Forget the peak RSS inherited at spawn: Linux carries the parent's high-water mark across fork+exec
    into ``ru_maxrss``, so a child started by a parent that had just built a large corpus would report the
    parent's peak. Writing 5 to clear_refs resets the mark (Linux >= 4.0); where that fails, nothing changes."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _rss_mb() -> float:
    """This process's peak RSS in MB since :func:`_reset_peak_rss` (``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def _cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _pin_one_core() -> int:
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    return core


def _language_folders(corpus: Path) -> list[str]:
    return corpus_mod.read_manifest(corpus)["languages"]


def _batches(corpus: Path, code: str, per_lang: int, columns=("doc_id", "text")):
    return corpus_mod.iter_batches(corpus / code, per_lang, BATCH_DOCS, columns)


def child_fasttext(args: argparse.Namespace, raw: bool) -> dict:
    from xinst_assets.core.lid import LanguageIdentifier, one_line
    from xinst_assets.languages import load_registry

    identifier = LanguageIdentifier(registry=load_registry())
    model = identifier._model  # the bare fastText model, for the raw floor
    base = _rss_mb()
    started, cpu = time.perf_counter(), _cpu_s()
    docs, top = 0, Counter()
    for code in _language_folders(args.corpus):
        for batch in _batches(args.corpus, code, args.per_lang):
            texts = batch.column("text").to_pylist()
            if raw:
                labels, _ = model.predict([one_line(t, identifier.max_chars) for t in texts], k=2)
                top.update(label[0] == f"__label__{code}" for label in labels)
            else:
                top.update(p.lang == code for p in identifier.predict(texts))
            docs += len(texts)
    return {
        "docs": docs,
        "seconds": time.perf_counter() - started,
        "cpu_s": _cpu_s() - cpu,
        "base_rss_mb": base,
        "extra": {"top_label_is_partition": top[True]},
    }


def child_xinst_filter(args: argparse.Namespace) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xinst_assets.core.dedup import signature_to_bytes
    from xinst_assets.core.filtering import Document, DocumentScreener, FilterSettings
    from xinst_assets.core.lid import LanguageIdentifier
    from xinst_assets.core.words import char_tables
    from xinst_assets.languages import load_registry

    registry = load_registry()
    identifier = LanguageIdentifier(registry=registry)
    char_tables()  # built once per process (under a second): setup, like loading the model
    screeners = {}
    for code in _language_folders(args.corpus):  # the second-opinion model's detectors too (as a worker does)
        lang = registry.get(code)
        screeners[code] = DocumentScreener(lang, identifier, FilterSettings.for_language(lang))
        if hasattr(screeners[code], "judge"):
            screeners[code].judge.warm()
    signals_schema = pa.schema(
        [
            ("doc_id", pa.string()),
            ("lid_label", pa.string()),
            ("lid_score", pa.float64()),
            ("lid_runner_up", pa.string()),
            ("lid_runner_up_score", pa.float64()),
            ("chars", pa.int64()),
            ("words", pa.int64()),
            ("reject_reason", pa.string()),
            ("content_key", pa.string()),
            ("minhash", pa.binary()),
        ]
    )
    base = _rss_mb()
    started, cpu = time.perf_counter(), _cpu_s()
    docs, reasons = 0, Counter()
    for code in _language_folders(args.corpus):
        screener = screeners[code]
        folder = args.work / code
        folder.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(folder / "signals.parquet", signals_schema) as signals:
            for batch in _batches(args.corpus, code, args.per_lang):
                ids = batch.column("doc_id").to_pylist()
                texts = batch.column("text").to_pylist()
                # content_keys: the exact-dedup key. The asset has it already (a doc id is the content id of
                # its text, computed at ingest); the corpus ids are not, so it is computed and timed here.
                screened = screener.screen(
                    [Document(d, t) for d, t in zip(ids, texts, strict=True)], content_keys=True
                )
                extra: list[tuple[str | None, bytes | None]] = [(None, None)] * len(ids)
                for i, key, signature in zip(
                    screened.kept.tolist(), screened.content_keys, screened.signatures, strict=True
                ):
                    extra[i] = (key, signature_to_bytes(signature))
                decisions = screened.decisions
                signals.write_table(
                    pa.Table.from_pydict(
                        {
                            "doc_id": ids,
                            "lid_label": [d.lid_lang for d in decisions],
                            "lid_score": [d.lid_score for d in decisions],
                            "lid_runner_up": [d.lid_runner_up for d in decisions],
                            "lid_runner_up_score": [d.lid_runner_up_score for d in decisions],
                            "chars": [d.chars for d in decisions],
                            "words": [d.words for d in decisions],
                            "reject_reason": [d.reason for d in decisions],
                            "content_key": [e[0] for e in extra],
                            "minhash": [e[1] for e in extra],
                        },
                        schema=signals_schema,
                    )
                )
                reasons.update((d.reason or "kept").split(":")[0] for d in decisions)
                docs += len(ids)
    return {
        "docs": docs,
        "seconds": time.perf_counter() - started,
        "cpu_s": _cpu_s() - cpu,
        "base_rss_mb": base,
        "extra": {"reasons": dict(reasons)},
    }


def child_xinst_dedup(args: argparse.Namespace) -> dict:
    """What language_filtered_text does: stream the survivors' signatures into the DuckDB index, decide.

    The survivors are read in batches from the filter's output (as the asset reads them from its staged
    Parquet file), in doc-id order (the corpus order: first seen first); nothing holds them all in memory.
    Exact copies are found by content key, as dbt's screened_documents does before the asset.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xinst_assets.core.dedup import KEPT, NearDuplicateIndex, signature_matrix
    from xinst_assets.core.filtering import FilterSettings
    from xinst_assets.languages import load_registry

    registry = load_registry()
    schema = pa.schema(
        [
            ("doc_id", pa.string()),
            ("keep", pa.bool_()),
            ("reason", pa.string()),
            ("duplicate_of", pa.string()),
            ("cluster_size", pa.int64()),
        ]
    )
    base = _rss_mb()
    started, cpu = time.perf_counter(), _cpu_s()
    survivors, reasons = 0, Counter()
    for code in _language_folders(args.corpus):
        config = FilterSettings.for_language(registry.get(code)).minhash
        empty = np.full(config.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        folder = args.work / code
        folder.mkdir(parents=True, exist_ok=True)
        source = pq.ParquetFile(args.input / code / "signals.parquet", pre_buffer=False)
        with NearDuplicateIndex(config, folder / "index", memory_limit=args.dedup_memory, threads=1) as index:
            for batch in source.iter_batches(batch_size=5_000, columns=["doc_id", "content_key", "minhash"]):
                signatures, kept = signature_matrix(batch.column("minhash"), config)
                if not kept.any():
                    continue
                rows = pa.array(kept)
                signatures = signatures[kept]
                index.add(
                    batch.column("doc_id").filter(rows).to_pylist(),
                    batch.column("content_key").filter(rows).to_pylist(),
                    signatures,
                    ~(signatures == empty).all(axis=1),
                )
            with pq.ParquetWriter(folder / "dedup.parquet", schema) as writer:
                for result in index.results():
                    kind = result.column("kind").to_pylist()
                    writer.write_table(
                        pa.Table.from_pydict(
                            {
                                "doc_id": result.column("doc_id"),
                                "keep": [k == KEPT for k in kind],
                                "reason": [None if k == KEPT else k for k in kind],
                                "duplicate_of": result.column("duplicate_of"),
                                "cluster_size": result.column("cluster_size"),
                            },
                            schema=schema,
                        )
                    )
                    reasons.update(k if k != KEPT else "kept" for k in kind)
                    survivors += len(kind)
    seconds, cpu = time.perf_counter() - started, _cpu_s() - cpu
    return {
        "docs": args.input_docs,
        "seconds": seconds,
        "cpu_s": cpu,
        "base_rss_mb": base,
        "extra": {"survivors_in": survivors, "reasons": dict(reasons)},
    }


def removed_by_kind_xinst(corpus: Path, per_lang: int, work: Path) -> dict[str, int]:
    """What the corpus generator made the documents xinst's dedup removed (read after the timed child)."""
    import pyarrow.parquet as pq

    removed = {}
    for path in sorted(work.glob("*/dedup.parquet")):
        table = pq.read_table(path, columns=["doc_id", "keep"])
        removed[path.parent.name] = [
            d for d, k in zip(table["doc_id"].to_pylist(), table["keep"].to_pylist(), strict=True) if not k
        ]
    return _removed_by_kind(corpus, per_lang, removed)


def _patch_datatrove_lid() -> None:
    """Make datatrove's LanguageFilter load the local lid.176.ftz instead of downloading lid.176.bin."""
    import datatrove.utils._import_utils as datatrove_imports
    import datatrove.utils.lid as datatrove_lid

    from xinst_assets.core.lid import default_lid_model_path

    local = str(default_lid_model_path())
    datatrove_lid.cached_asset_path_or_download = lambda *args, **kwargs: local
    # datatrove asks for the distribution fasttext-numpy2-wheel; fasttext-community provides the same module.
    available = datatrove_imports._is_distribution_available
    datatrove_imports._is_distribution_available = lambda name: (
        name == "fasttext-numpy2-wheel" or available(name)
    )


def _quiet_loguru() -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


def datatrove_stop_words(code: str) -> list[str]:
    """The most frequent words of the sample's clean documents of ``code``, by datatrove's tokenizer."""
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    tokenizer = load_word_tokenizer(DATATROVE_CODES[code])
    counts = Counter()
    for text in corpus_mod.clean_documents()[code]:
        counts.update(w.lower() for w in tokenizer.word_tokenize(text) if any(c.isalpha() for c in w))
    return [w for w, _ in counts.most_common(STOP_WORDS_PER_LANGUAGE)]


def child_datatrove_filter(args: argparse.Namespace) -> dict:
    _patch_datatrove_lid()
    _quiet_loguru()
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, LanguageFilter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    from xinst_assets.languages import load_registry

    registry = load_registry()
    codes, skipped = datatrove_languages(_language_folders(args.corpus))
    stop_words = {code: datatrove_stop_words(code) for code in codes}
    base = _rss_mb()
    started, cpu = time.perf_counter(), _cpu_s()
    for code in codes:
        dt_code = DATATROVE_CODES[code]
        pipeline = [
            ParquetReader(
                str(args.corpus / code),
                text_key="text",
                id_key="doc_id",
                limit=args.per_lang,
                read_metadata=False,  # kind and dup_of stay out: the writer wants one schema
                batch_size=BATCH_DOCS,
            ),
            LanguageFilter(languages=[code], language_threshold=registry.get(code).lid_threshold),
            GopherQualityFilter(language=dt_code, stop_words=stop_words[code]),
            FineWebQualityFilter(language=dt_code),
            ParquetWriter(str(args.work / "filtered" / code)),
        ]
        LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(args.work / "logs" / code)).run()
    seconds, cpu = time.perf_counter() - started, _cpu_s() - cpu
    kept = _count_parquet_rows(args.work / "filtered")
    stats = {}
    for code in codes:
        path = args.work / "logs" / code / "stats.json"
        if path.is_file():
            stats[code] = _datatrove_drops(json.loads(path.read_text()))
    return {
        "docs": args.per_lang * len(codes),
        "seconds": seconds,
        "cpu_s": cpu,
        "base_rss_mb": base,
        "extra": {"kept": kept, "stop_words": stop_words, "dropped": stats, "languages_skipped": skipped},
    }


def datatrove_languages(codes: list[str]) -> tuple[list[str], dict[str, str]]:
    """The languages datatrove can run here (a code and a working word tokenizer), and why others cannot."""
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    usable, skipped = [], {}
    for code in codes:
        if code not in DATATROVE_CODES:
            skipped[code] = "no datatrove language code known to the bench"
            continue
        try:
            load_word_tokenizer(DATATROVE_CODES[code]).word_tokenize("a b")
        except Exception as error:  # noqa: BLE001 - a missing tokenizer package, reported in the table
            skipped[code] = f"{type(error).__name__}: {error}"
            continue
        usable.append(code)
    return usable, skipped


def _datatrove_drops(stats: list[dict]) -> dict:
    """name -> dropped count from datatrove's stats.json."""
    out = {}
    for step in stats:
        dropped = step.get("stats", {}).get("dropped")
        if dropped:
            out[step.get("name", "?")] = (
                dropped if isinstance(dropped, int) else dropped.get("total", dropped)
            )
    return out


def _count_parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in folder.rglob("*.parquet"))


def _patch_datatrove_xxhash() -> None:
    """datatrove 0.10.1 hands str to xxhash, which xxhash 4 refuses ("Strings must be encoded"): encode it."""
    import datatrove.utils.hashes.xxhash as datatrove_xxhash
    import xxhash

    def xxhash64(data: str | bytes) -> int:
        return xxhash.xxh64_intdigest(data.encode("utf-8") if isinstance(data, str) else data)

    def xxhash32(data: str | bytes) -> int:
        return xxhash.xxh32_intdigest(data.encode("utf-8") if isinstance(data, str) else data)

    datatrove_xxhash.xxhash64, datatrove_xxhash.xxhash32 = xxhash64, xxhash32


def child_datatrove_minhash(args: argparse.Namespace) -> dict:
    _quiet_loguru()
    _patch_datatrove_xxhash()
    import pyarrow.parquet as pq
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    config = MinhashConfig()  # 5-grams, 14 buckets x 8 hashes: the settings xinst's MinhashConfig copies
    codes = [code for code in _language_folders(args.corpus) if (args.input / "filtered" / code).is_dir()]
    base = _rss_mb()
    started, cpu = time.perf_counter(), _cpu_s()
    for code in codes:
        src = str(args.input / "filtered" / code)
        w = args.work / code
        logs = args.work / "logs" / code
        steps = [
            (
                [
                    ParquetReader(src),
                    MinhashDedupSignature(str(w / "sigs"), config, language=DATATROVE_CODES[code]),
                ],
                1,
            ),
            ([MinhashDedupBuckets(str(w / "sigs"), str(w / "buckets"), config=config)], config.num_buckets),
            ([MinhashDedupCluster(str(w / "buckets"), str(w / "remove_ids"), config=config)], 1),
            (
                [
                    ParquetReader(src),
                    MinhashDedupFilter(str(w / "remove_ids")),
                    ParquetWriter(str(w / "deduped")),
                ],
                1,
            ),
        ]
        for i, (pipeline, tasks) in enumerate(steps, 1):
            LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=str(logs / f"stage{i}")).run()
    seconds, cpu = time.perf_counter() - started, _cpu_s() - cpu
    removed = {}
    for code in codes:
        before = set()
        for p in sorted((args.input / "filtered" / code).rglob("*.parquet")):
            before.update(pq.read_table(p, columns=["id"]).column("id").to_pylist())
        after = set()
        for p in sorted((args.work / code / "deduped").rglob("*.parquet")):
            after.update(pq.read_table(p, columns=["id"]).column("id").to_pylist())
        removed[code] = sorted(before - after)
    return {
        "docs": args.input_docs,
        "seconds": seconds,
        "cpu_s": cpu,
        "base_rss_mb": base,
        "extra": {
            "survivors_in": _count_parquet_rows(args.input / "filtered"),
            "kept": _count_parquet_rows(args.work),
            "removed_by_kind": _removed_by_kind(args.corpus, args.per_lang, removed),
        },
    }


def _removed_by_kind(corpus: Path, per_lang: int, removed: dict[str, list[str]]) -> dict[str, int]:
    """How many removed documents the corpus generator made as exact / near copies or as originals."""
    out: Counter = Counter()
    for code, ids in removed.items():
        wanted = set(ids)
        for batch in corpus_mod.iter_batches(corpus / code, per_lang, 50_000, ("doc_id", "kind")):
            for doc_id, kind in zip(batch["doc_id"].to_pylist(), batch["kind"].to_pylist(), strict=True):
                if doc_id in wanted:
                    out[kind] += 1
    return dict(out)


CHILDREN = {
    "fasttext_raw": lambda a: child_fasttext(a, raw=True),
    "fasttext_floor": lambda a: child_fasttext(a, raw=False),
    "xinst_filter": child_xinst_filter,
    "xinst_dedup": child_xinst_dedup,
    "datatrove_filter": child_datatrove_filter,
    "datatrove_minhash": child_datatrove_minhash,
}


def run_child(args: argparse.Namespace) -> None:
    core = _pin_one_core()
    _reset_peak_rss()
    args.work.mkdir(parents=True, exist_ok=True)
    work = CHILDREN[args.child]
    if args.profile_to:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(work, args)
        profiler.dump_stats(str(args.profile_to))
    else:
        result = work(args)
    result.update({"name": args.child, "peak_rss_mb": _rss_mb(), "core": core})
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------------------------- parent

LABELS = {
    "fasttext_raw": "fastText raw (model.predict)",
    "fasttext_floor": "fastText floor (LanguageIdentifier)",
    "xinst_filter": "xinst filter (LID+quality)",
    "xinst_dedup": "xinst dedup (exact+MinHash)",
    "xinst_stage": "xinst stage (filter+dedup)",
    "datatrove_filter": "datatrove filters (LID+Gopher+FineWeb)",
    "datatrove_minhash": "datatrove MinHash (4 stages)",
    "datatrove_stage": "datatrove stage (filters+MinHash)",
    "baseline_filter": "baseline filter (--baseline-tree)",
    "baseline_dedup": "baseline dedup (--baseline-tree)",
    "baseline_stage": "baseline stage (--baseline-tree)",
}
# --baseline-tree: another checkout whose bench/bench_filter.py runs the baseline's xinst children (a list, set
# by main), so that the code before a change and after it are timed in one run on the same corpus.
BASELINE_TREE: list[Path] = []


def spawn(
    name: str,
    corpus: Path,
    per_lang: int,
    work: Path,
    input_dir: Path | None = None,
    input_docs: int = 0,
    profile_to: Path | None = None,
    script: Path | None = None,
    label: str | None = None,
) -> dict:
    """Run one contender in a fresh interpreter pinned to one core; return its RESULT record. ``script``:
    another checkout's copy of this file (its own ``xinst_assets`` comes first on its path)."""
    import shutil

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cmd = [
        sys.executable,
        str(script or Path(__file__).resolve()),
        "--child",
        name,
        "--corpus",
        str(corpus),
        "--per-lang",
        str(per_lang),
        "--work",
        str(work),
        "--input-docs",
        str(input_docs),
    ]
    if input_dir is not None:
        cmd += ["--input", str(input_dir)]
    if profile_to is not None:
        cmd += ["--profile-to", str(profile_to)]
    cmd += ["--dedup-memory", DEDUP_MEMORY[0]]
    env = {**os.environ, **THREAD_ENV}
    log = work.parent / f"{work.name}.log"
    with open(log, "w") as handle:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=handle, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{name} failed (exit {proc.returncode}); stderr tail:\n{tail}")
    result = json.loads(lines[-1][len("RESULT ") :])
    (work.parent / f"{work.name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(
        f"  {label or LABELS[name]:<42} {result['docs']:>9,} docs {result['seconds']:>8.1f} s wall "
        f"{result['cpu_s']:>8.1f} s CPU {rate(result):>8,.0f} docs/CPU-s  "
        f"peak RSS {result['peak_rss_mb']:,.0f} MB",
        flush=True,
    )
    return result


def combine(name: str, first: dict, second: dict) -> dict:
    return {
        "name": name,
        "docs": first["docs"],
        "seconds": first["seconds"] + second["seconds"],
        "cpu_s": first["cpu_s"] + second["cpu_s"],
        "peak_rss_mb": max(first["peak_rss_mb"], second["peak_rss_mb"]),
        "extra": {},
    }


def run_size(
    corpus: Path, n_docs: int, n_langs: int, out: Path, contenders: list[str], repeat: int = 1
) -> dict[str, dict]:
    """Each contender on ``n_docs`` documents. xinst and the fastText floor run ``repeat`` times, taking
    turns (xinst, floor, xinst, floor ...), and each keeps its fastest run: on a shared machine the CPU time
    of a run grows with what runs beside it, never shrinks, so the minimum is the least disturbed figure."""
    per_lang = n_docs // n_langs
    docs = per_lang * n_langs
    base = out / "runs" / f"docs-{docs}"
    results: dict[str, dict] = {}
    print(f"\n{docs:,} documents ({per_lang:,} per language):", flush=True)

    def keep_fastest(name: str, result: dict) -> None:
        seen = results.get(name, {}).get("cpu_s_runs", [])
        result["cpu_s_runs"] = seen + [round(result["cpu_s"], 2)]
        if name not in results or result["cpu_s"] < results[name]["cpu_s"]:
            results[name] = result
        else:
            results[name]["cpu_s_runs"] = result["cpu_s_runs"]

    for turn in range(repeat):
        if "xinst" in contenders and BASELINE_TREE:
            script = BASELINE_TREE[0] / "bench" / "bench_filter.py"
            keep_fastest("baseline_filter", spawn("xinst_filter", corpus, per_lang, base / "baseline_filter",
                                                  script=script, label=LABELS["baseline_filter"]))
            keep_fastest("baseline_dedup", spawn("xinst_dedup", corpus, per_lang, base / "baseline_dedup",
                                                 base / "baseline_filter", docs, script=script,
                                                 label=LABELS["baseline_dedup"]))
        if "xinst" in contenders:
            keep_fastest("xinst_filter", spawn("xinst_filter", corpus, per_lang, base / "xinst_filter"))
            keep_fastest(
                "xinst_dedup",
                spawn("xinst_dedup", corpus, per_lang, base / "xinst_dedup", base / "xinst_filter", docs),
            )
        if "fasttext" in contenders:
            if docs <= RAW_FLOOR_MAX_DOCS:
                keep_fastest("fasttext_raw", spawn("fasttext_raw", corpus, per_lang, base / "fasttext_raw"))
            keep_fastest("fasttext_floor", spawn("fasttext_floor", corpus, per_lang, base / "fasttext_floor"))
    if "xinst" in contenders:
        results["xinst_dedup"]["extra"]["removed_by_kind"] = removed_by_kind_xinst(
            corpus, per_lang, base / "xinst_dedup"
        )
        results["xinst_stage"] = combine("xinst_stage", results["xinst_filter"], results["xinst_dedup"])
        if "baseline_filter" in results:
            results["baseline_stage"] = combine("baseline_stage", results["baseline_filter"],
                                                results["baseline_dedup"])
    if "datatrove" in contenders:
        results["datatrove_filter"] = spawn("datatrove_filter", corpus, per_lang, base / "datatrove_filter")
        results["datatrove_minhash"] = spawn(
            "datatrove_minhash",
            corpus,
            per_lang,
            base / "datatrove_minhash",
            base / "datatrove_filter",
            results["datatrove_filter"]["docs"],
        )
        results["datatrove_stage"] = combine(
            "datatrove_stage", results["datatrove_filter"], results["datatrove_minhash"]
        )
    return results


def rate(result: dict) -> float:
    """Documents per second of one core, from the CPU time of the pinned process.

    Wall time on a shared machine includes the time other processes held the core; CPU time does not, so it
    is the per-core rate that survives a busy machine (the wall time is printed beside it).
    """
    return result["docs"] / result["cpu_s"] if result["cpu_s"] else float("nan")


DATATROVE_COUNTERPART = {
    "xinst_filter": "datatrove_filter",
    "xinst_dedup": "datatrove_minhash",
    "xinst_stage": "datatrove_stage",
    "datatrove_filter": "datatrove_filter",
    "datatrove_minhash": "datatrove_minhash",
    "datatrove_stage": "datatrove_stage",
    "fasttext_raw": "datatrove_stage",
    "fasttext_floor": "datatrove_stage",
}


def print_speed_table(by_size: dict[int, dict[str, dict]], datatrove: dict[str, dict]) -> None:
    header = [
        "contender",
        "docs",
        "wall s",
        "CPU s",
        "docs/s/core",
        "vs datatrove",
        "vs fastText floor",
        "peak RSS MB",
    ]
    rows = []
    for docs, results in sorted(by_size.items()):
        floor = results.get("fasttext_floor")
        for name in LABELS:
            if name not in results:
                continue
            r = results[name]
            counterpart = datatrove.get(DATATROVE_COUNTERPART.get(name, ""))
            vs_dt = f"{rate(r) / rate(counterpart):.2f}x" if counterpart else "-"
            vs_floor = f"{rate(r) / rate(floor):.2f}x" if floor else "-"
            rows.append(
                [
                    LABELS[name],
                    f"{docs:,}",
                    f"{r['seconds']:.1f}",
                    f"{r['cpu_s']:.1f}"
                    + (f" (runs: {', '.join(f'{c:.1f}' for c in r['cpu_s_runs'])})" if len(r.get("cpu_s_runs", [])) > 1 else ""),
                    f"{rate(r):,.0f}",
                    vs_dt,
                    vs_floor,
                    f"{r['peak_rss_mb']:,.0f}",
                ]
            )
    print_table(header, rows)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def accuracy() -> None:
    """Recall of clean documents and precision of the kept set, per sample language (xinst's filter)."""
    from xinst_assets.core.filtering import Document, evaluate_on_labels, run_language_filter
    from xinst_assets.core.lid import LanguageIdentifier
    from xinst_assets.core.text import content_id
    from xinst_assets.languages import load_registry

    registry = load_registry()
    identifier = LanguageIdentifier(registry=registry)
    rows = []
    for labels_path in sorted((corpus_mod.SAMPLE / "labels").glob("*.jsonl")):
        code = labels_path.stem
        shards = sorted((corpus_mod.SAMPLE / "raw" / code).glob("*.jsonl"))
        if code not in registry or not shards:
            continue
        labels = {}
        for line in labels_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                labels[record["url"]] = record
        originals = {r["duplicate_of"] for r in labels.values() if r.get("duplicate_of")}
        docs, tags, groups = [], [], []
        for shard in shards:
            for line in shard.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                raw = json.loads(line)
                label = labels[raw["url"]]
                docs.append(Document(content_id(raw["text"]), raw["text"], published_at=raw.get("timestamp")))
                tags.append(label["label"])
                groups.append(label.get("duplicate_of") or (raw["url"] if raw["url"] in originals else None))
        decisions = run_language_filter(docs, registry.get(code), identifier)
        result = evaluate_on_labels(decisions, tags, groups)[code]
        wrong = {label: n for label, n in result.kept_by_label.items() if label != "clean"}
        lost = result.dropped_by_label.get("clean", {})
        rows.append(
            [
                code,
                str(len(docs)),
                str(result.clean_total),
                str(result.clean_kept),
                str(result.kept_total),
                f"{result.recall:.3f}",
                f"{result.precision:.3f}",
                ", ".join(f"{k} {v}" for k, v in sorted(wrong.items())) or "-",
                ", ".join(f"{k} {v}" for k, v in sorted(lost.items())) or "-",
            ]
        )
    print("\nAccuracy on the labelled sample (xinst run_language_filter, lid.176.ftz):")
    print_table(
        [
            "lang",
            "docs",
            "clean",
            "clean kept",
            "kept",
            "recall",
            "precision",
            "kept but not clean",
            "clean dropped (reason)",
        ],
        rows,
    )


def print_profile(path: Path, title: str, top: int = 12) -> None:
    """The functions that take the time: by own time, then by cumulative time (our code and fastText only)."""
    import pstats

    stats = pstats.Stats(str(path))
    entries = [
        (tt, ct, nc, f"{Path(filename).name}:{line}({func})")
        for (filename, line, func), (cc, nc, tt, ct, callers) in stats.stats.items()
    ]
    total = sum(e[0] for e in entries)
    print(f"\n{title}: {total:.1f} s profiled (cProfile slows Python code more than C code)")
    print("  by own time:")
    for tt, _, nc, where in sorted(entries, reverse=True)[:top]:
        print(f"  {tt:8.2f} s {100 * tt / total:5.1f}%  {nc:>10,} calls  {where}")
    print("  by cumulative time (xinst_assets, datasketch and fastText functions):")
    ours = [
        e
        for e in entries
        if any(
            k in e[3]
            for k in (
                "quality.py",
                "words.py",
                "lid.py",
                "dedup.py",
                "filtering.py",
                "text.py",
                "lsh.py",
                "Predict",
            )
        )
    ]
    for _, ct, nc, where in sorted(ours, key=lambda e: -e[1])[:top]:
        print(f"  {ct:8.2f} s {100 * ct / total:5.1f}%  {nc:>10,} calls  {where}")


def components(corpus: Path, per_lang: int) -> None:
    """CPU time per document of each step of xinst's path (the calls DocumentScreener and the dedup child
    make, timed one by one with ``time.process_time`` in this process, pinned to one core)."""
    import numpy as np

    from xinst_assets.core.dedup import NearDuplicateIndex
    from xinst_assets.core.filtering import Document, DocumentScreener, FilterSettings
    from xinst_assets.core.lid import LanguageIdentifier, decide_language
    from xinst_assets.core.quality import assess_quality_batch
    from xinst_assets.core.text import content_id
    from xinst_assets.core.words import TextBatch, char_tables
    from xinst_assets.languages import load_registry

    _pin_one_core()
    registry = load_registry()
    identifier = LanguageIdentifier(registry=registry)
    char_tables()
    spent: Counter = Counter()
    docs = 0

    by_lang: dict[str, Counter] = {}

    def timed(name: str, fn, *a, **kw):
        start = time.process_time()
        out = fn(*a, **kw)
        spent[name] += time.process_time() - start
        by_lang[code][name] += time.process_time() - start
        return out

    languages = _language_folders(corpus)
    for code in languages:
        by_lang[code] = Counter()
        lang = registry.get(code)
        settings = FilterSettings.for_language(lang)
        screener = DocumentScreener(lang, identifier, settings)
        keys, signatures, shingled, kept_ids = [], [], [], []
        for batch in timed("read Parquet batch", lambda: list(_batches(corpus, code, per_lang))):
            ids = batch.column("doc_id").to_pylist()
            texts = timed("read Parquet batch", batch.column("text").to_pylist)
            docs += len(texts)
            predictions = timed("LID (LanguageIdentifier.predict)", identifier.predict, texts)
            passed = [
                i for i, p in enumerate(predictions) if decide_language(p, lang, settings.lid_policy)[0]
            ]
            passed_texts = [texts[i] for i in passed]
            words = timed("split words (TextBatch, numpy)", lambda: TextBatch(passed_texts))
            timed("split words (TextBatch, numpy)", lambda: (words.words, words.shingle_safe))
            word_ids = timed("word ids (Vocabulary)", screener.vocabulary.ids, words.words)
            verdicts = timed(
                "quality rules (batch)", assess_quality_batch, passed_texts, lang.script,
                settings.quality, words, word_ids,
            )
            rows = np.array([k for k, v in enumerate(verdicts) if v.reason is None], dtype=np.int64)
            matrix, has = timed(
                "MinHash signatures", screener.signer.signatures_of, words, word_ids, lang.script, rows
            )
            timed(
                "content key (content_id)",
                lambda: keys.extend(
                    content_id(passed_texts[k], nfc) for k, nfc in zip(rows, words.nfc[rows].tolist())
                ),
            )
            timed(
                "decisions (FilterDecision objects)",
                lambda: screener.screen([Document(d, "") for d in ids[: len(texts)]], signatures=False),
            )
            signatures.append(matrix)
            shingled += has
            kept_ids += [ids[passed[k]] for k in rows.tolist()]
        start = time.process_time()
        with NearDuplicateIndex(settings.minhash, memory_limit=DEDUP_MEMORY[0], threads=1) as index:
            if kept_ids:
                index.add(kept_ids, keys, np.concatenate(signatures), shingled)
            for _ in index.results():
                pass
        spent["near-dedup index (DuckDB: add, join, check, results)"] += time.process_time() - start
        by_lang[code]["near-dedup index (DuckDB: add, join, check, results)"] += time.process_time() - start
    total = sum(spent.values())
    print(f"\nPer-document CPU time of xinst's steps on {docs:,} documents ({per_lang:,} per language):")
    per_lang_docs = docs / len(languages)
    print_table(
        ["step", "µs/doc", "share", *languages],
        [
            [name, f"{1e6 * t / docs:,.0f}", f"{100 * t / total:.0f}%"]
            + [f"{1e6 * by_lang[c][name] / per_lang_docs:,.0f}" for c in languages]
            for name, t in spent.items()
        ]
        + [
            ["total", f"{1e6 * total / docs:,.0f}", "100%"]
            + [f"{1e6 * sum(by_lang[c].values()) / per_lang_docs:,.0f}" for c in languages]
        ],
    )
    print(
        "(quality and signatures run only on the documents that pass LID, signatures only on those that pass "
        "quality; 'decisions' is a screen() of empty texts: the bookkeeping of the length checks and records)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="100000,1000000", help="comma-separated corpus sizes for fastText and xinst"
    )
    parser.add_argument(
        "--datatrove-docs",
        type=int,
        default=20_000,
        help="documents for the datatrove comparison (it runs ~150-300 docs/s); 0 skips it",
    )
    parser.add_argument("--quick", action="store_true", help="20k documents, datatrove on 5k")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="DOCS",
        help="only profile xinst's filter and dedup on DOCS documents",
    )
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run xinst and the fastText floor this many times, taking turns, and keep each one's fastest run",
    )
    parser.add_argument(
        "--dedup-memory",
        default=DEDUP_MEMORY[0],
        help="DuckDB memory_limit of the near-dedup index (it spills to disk beyond it)",
    )
    parser.add_argument(
        "--components",
        type=int,
        default=0,
        metavar="DOCS",
        help="only time each step of xinst's per-document path on DOCS documents per language",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--baseline-tree", type=Path,
                        help="another checkout (e.g. a git worktree of the commit before a change): its xinst "
                        "filter and dedup are timed too, taking turns with this checkout's")
    # child mode (internal)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--per-lang", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--input-docs", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    DEDUP_MEMORY[0] = args.dedup_memory
    if args.baseline_tree:
        BASELINE_TREE.append(args.baseline_tree.resolve())
    if args.child:
        run_child(args)
        return 0

    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    dt_docs = 5_000 if args.quick else args.datatrove_docs
    if args.profile:
        sizes, dt_docs = [args.profile], 0
    if args.components:
        dt_docs = 0
    if any(s < 1 for s in sizes) or dt_docs < 0:
        parser.error("sizes must be positive")
    print(
        f"bench_filter: python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at start",
        flush=True,
    )
    if not args.skip_accuracy and not args.profile and not args.components:
        accuracy()

    largest = max(sizes + [dt_docs])
    started = time.perf_counter()
    corpus = corpus_mod.build_corpus(largest, args.seed, args.out / "corpus")
    manifest = corpus_mod.read_manifest(corpus)
    n_langs = len(manifest["languages"])
    print(
        f"\nCorpus: {corpus.relative_to(ROOT) if corpus.is_relative_to(ROOT) else corpus} "
        f"({manifest['docs']:,} docs, languages {', '.join(manifest['languages'])}, mean "
        f"{manifest['mean_chars']:,.0f} chars, kinds {manifest['kinds']}; ready in "
        f"{time.perf_counter() - started:.0f} s)",
        flush=True,
    )

    if args.components:
        components(corpus, args.components)
        return 0

    if args.profile:
        per_lang = args.profile // n_langs
        base = args.out / "runs" / f"profile-{per_lang * n_langs}"
        spawn("xinst_filter", corpus, per_lang, base / "xinst_filter", profile_to=base / "filter.prof")
        spawn(
            "xinst_dedup",
            corpus,
            per_lang,
            base / "xinst_dedup",
            base / "xinst_filter",
            per_lang * n_langs,
            profile_to=base / "dedup.prof",
        )
        print_profile(base / "filter.prof", "xinst filter")
        print_profile(base / "dedup.prof", "xinst dedup")
        return 0

    by_size: dict[int, dict[str, dict]] = {}
    datatrove: dict[str, dict] = {}
    if dt_docs:
        dt_results = run_size(
            corpus, dt_docs, n_langs, args.out, ["fasttext", "xinst", "datatrove"], args.repeat
        )
        datatrove = {k: v for k, v in dt_results.items() if k.startswith("datatrove")}
        by_size[dt_results["datatrove_filter"]["docs"]] = dt_results
    for size in sizes:
        docs = (size // n_langs) * n_langs
        if docs in by_size:
            continue
        by_size[docs] = run_size(corpus, size, n_langs, args.out, ["fasttext", "xinst"], args.repeat)

    print(
        f"\nStage 2 speed, one core per contender (load average {os.getloadavg()[0]:.2f} at the end). "
        f"datatrove measured on {(dt_docs // n_langs) * n_langs:,} docs only; docs/s/core = docs / CPU "
        "seconds of the pinned process; 'vs datatrove' compares with its matching phase (stage and floor "
        "rows: with its whole stage):"
    )
    print_speed_table(by_size, datatrove)

    print("\nWhat each contender dropped:")
    for docs, results in sorted(by_size.items()):
        for name in ("xinst_filter", "xinst_dedup", "datatrove_filter", "datatrove_minhash"):
            if name in results:
                extra = {k: v for k, v in results[name]["extra"].items() if k != "stop_words"}
                print(f"  {docs:>9,} {LABELS[name]}: {json.dumps(extra, ensure_ascii=False)}")
    if datatrove:
        stop_words = datatrove["datatrove_filter"]["extra"]["stop_words"]
        skipped = datatrove["datatrove_filter"]["extra"].get("languages_skipped") or {}
        print(f"  datatrove languages left out: {json.dumps(skipped) if skipped else 'none'}")
        print(
            "  datatrove Gopher stop words (8 most frequent sample words): "
            + json.dumps(stop_words, ensure_ascii=False)
        )

    print("\nGoals:")
    for docs, results in sorted(by_size.items()):
        if "xinst_stage" not in results:
            continue
        stage, floor = results["xinst_stage"], results.get("fasttext_floor")
        parts = [f"{docs:>9,} docs: xinst stage {rate(stage):,.0f} docs/s/core"]
        if "baseline_stage" in results:
            before = results["baseline_stage"]
            parts.append(f"baseline stage {rate(before):,.0f} docs/s/core"
                         + (f" ({rate(floor) / rate(before):.2f}x slower than the floor)" if floor else ""))
        if datatrove:
            ratio = rate(stage) / rate(datatrove["datatrove_stage"])
            parts.append(f"{ratio:.2f}x datatrove (goal >= 3x: {'met' if ratio >= 3 else 'MISSED'})")
        if floor:
            slow = rate(floor) / rate(stage)
            parts.append(
                f"{slow:.2f}x slower than the fastText floor (goal <= 2x: {'met' if slow <= 2 else 'MISSED'})"
            )
        print("  " + "; ".join(parts))
    filters = [
        (docs, r["xinst_filter"]["peak_rss_mb"]) for docs, r in sorted(by_size.items()) if "xinst_filter" in r
    ]
    if len(filters) > 1:
        # The goal names the two largest sizes (100k and 1M by default). Memory that grows with the corpus
        # grows 10x between them; 10% of slack covers allocator and Parquet-footer noise.
        (small, rss_small), (large, rss_large) = filters[-2], filters[-1]
        flat = rss_large <= rss_small * 1.1
        print(
            "  filter peak RSS "
            + ", ".join(f"{rss:,.0f} MB at {docs:,}" for docs, rss in filters)
            + f"; {large / small:.0f}x the documents adds {rss_large - rss_small:+,.0f} MB "
            f"(goal: flat within 10%: {'met' if flat else 'MISSED'})"
        )
        dedups = [
            (docs, r["xinst_dedup"]["peak_rss_mb"])
            for docs, r in sorted(by_size.items())
            if "xinst_dedup" in r
        ]
        (small, rss_small), (large, rss_large) = dedups[-2], dedups[-1]
        print(
            f"  dedup peak RSS (DuckDB index, memory_limit {DEDUP_MEMORY[0]}): "
            + ", ".join(f"{rss:,.0f} MB at {docs:,}" for docs, rss in dedups)
            + f"; {large / small:.0f}x the documents adds {rss_large - rss_small:+,.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
