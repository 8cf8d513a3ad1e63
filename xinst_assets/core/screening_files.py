"""Stage 2's per-document screening of staged files, on several processes when there is enough work.

Language ID, the quality heuristics and MinHash are pure Python and NumPy on one core. A run over several
languages (or one large language) screens its staged documents in batches on a pool of worker processes, each
with its own fastText model and one :class:`DocumentScreener` per language (whose word vocabulary grows
across the batches it sees). The batches go out and come back in order, a bounded number at a time, so
memory stays bounded and the output files are the same whatever the number of processes.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from xinst_assets.core.dedup import signature_to_bytes
from xinst_assets.core.filtering import Document, DocumentScreener, FilterSettings
from xinst_assets.core.lid import LanguageIdentifier
from xinst_assets.languages import Language, LanguageRegistry

BATCH_DOCS = 2_000
# Below this many documents a pool costs more than it saves (each worker imports and loads the model, ~1 s).
POOL_MIN_DOCS = 4 * BATCH_DOCS
IN_FLIGHT_PER_WORKER = 2  # batches queued per worker: keeps them busy, bounds memory
_calls = itertools.count()  # numbers screen_files calls, for the screeners in the workers

SIGNALS_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("lid_label", pa.string()), ("lid_score", pa.float64()),
    ("lid_runner_up", pa.string()), ("lid_runner_up_score", pa.float64()), ("chars", pa.int64()),
    ("words", pa.int64()), ("reject_reason", pa.string()), ("minhash", pa.binary()),
    ("lid_second_label", pa.string()), ("lid_second_score", pa.float64()), ("lid_decided_by", pa.string()),
    ("lid_english_share", pa.float64()),
])


@dataclass(frozen=True)
class ScreeningJob:
    """One language's staged documents (doc_id, text, published_at) and where its verdicts go."""

    lang: Language
    settings: FilterSettings
    pending: Path
    out: Path


def screen_batch(screener: DocumentScreener, rows: list[dict]) -> pa.Table:
    """Verdicts (and the survivors' MinHash signatures) of one batch of staged rows, in input order."""
    docs = [Document(r["doc_id"], r["text"], published_at=r["published_at"]) for r in rows]
    screened = screener.screen(docs)
    minhash: list[bytes | None] = [None] * len(docs)
    for i, signature in zip(screened.kept.tolist(), screened.signatures):
        minhash[i] = signature_to_bytes(signature)
    return pa.Table.from_pylist(
        [{"doc_id": d.doc_id, "lid_label": d.lid_lang, "lid_score": d.lid_score,
          "lid_runner_up": d.lid_runner_up, "lid_runner_up_score": d.lid_runner_up_score,
          "chars": d.chars, "words": d.words, "reject_reason": d.reason, "minhash": m,
          "lid_second_label": d.lid_second_lang, "lid_second_score": d.lid_second_score,
          "lid_decided_by": d.lid_decided_by, "lid_english_share": d.lid_english_share}
         for d, m in zip(screened.decisions, minhash)],
        schema=SIGNALS_SCHEMA,
    )


def _batches(jobs: Sequence[ScreeningJob]) -> Iterator[tuple[int, list[dict]]]:
    for index, job in enumerate(jobs):
        # pre_buffer=False: pyarrow would otherwise keep every row group read until the file is closed.
        for batch in pq.ParquetFile(job.pending, pre_buffer=False).iter_batches(batch_size=BATCH_DOCS):
            yield index, batch.to_pylist()


# A worker process's state: its model, and a screener per language for the screen_files call it serves now.
_worker: dict = {}


def _start_worker(model_path: str, registry: LanguageRegistry) -> None:
    _worker["identifier"] = LanguageIdentifier(model_path, registry)
    _worker["screeners"] = {}
    # The second-opinion model's detectors of every language, once per worker (a few seconds, while the
    # pool waits for its first batch): each screener then uses the process's model.
    for lang in registry:
        DocumentScreener(lang, _worker["identifier"], FilterSettings.for_language(lang)).judge.warm()


def _screen_in_worker(call: int, lang: Language, settings: FilterSettings, rows: list[dict]) -> pa.Table:
    # A pool may serve several calls (with other settings): a screener serves one call's language. Dropping
    # another call's screeners costs only their set-up (verdicts never depend on a screener's history).
    screeners = _worker["screeners"]
    if (call, lang.code) not in screeners:
        for key in [key for key in screeners if key[0] != call]:
            del screeners[key]
        screeners[call, lang.code] = DocumentScreener(lang, _worker["identifier"], settings)
    return screen_batch(screeners[call, lang.code], rows)


class ScreeningPool:
    """``workers`` processes that screen documents with the fastText model at ``model_path``. They start at
    once (each imports the screening code and loads the model: about a second), so a pool started ahead of
    the work is ready when the documents are."""

    def __init__(self, workers: int, model_path: str | Path, registry: LanguageRegistry) -> None:
        self.workers, self.model_path, self.registry = workers, str(model_path), registry
        context = multiprocessing.get_context("spawn")  # fork is unsafe in a threaded Dagster process
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                                            initargs=(self.model_path, registry))
        for _ in range(workers):  # a submitted task makes the executor start its processes now
            self.executor.submit(os.getpid)

    def serves(self, workers: int, model_path: str | Path, registry: LanguageRegistry) -> bool:
        """Whether this pool is the one ``workers`` processes with this model and registry would be."""
        return (workers, str(model_path), registry) == (self.workers, self.model_path, self.registry)

    def close(self) -> None:
        self.executor.shutdown(cancel_futures=True)


# The pool started ahead by started_ahead(), which screen_files uses when it serves the call.
_ahead: list[ScreeningPool] = []


@contextlib.contextmanager
def started_ahead(workers: int, model_path: str | Path, registry: LanguageRegistry) -> Iterator[ScreeningPool]:
    """Start a :class:`ScreeningPool` now, for the :func:`screen_files` calls of this process until the block
    ends (a command that knows it will screen starts the workers while it does other work first)."""
    pool = ScreeningPool(workers, model_path, registry)
    _ahead.append(pool)
    try:
        yield pool
    finally:
        _ahead.remove(pool)
        pool.close()


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells, as in a container)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def screen_files(
    jobs: Sequence[ScreeningJob],
    identifier: LanguageIdentifier,
    registry: LanguageRegistry,
    workers: int,
    on_rows: Callable[[int], None] = lambda n: None,
    min_pool_docs: int = POOL_MIN_DOCS,
) -> None:
    """Screen every job's staged documents into its ``out`` file (same rows, same order, whatever
    ``workers``). In this process with ``identifier`` when ``workers`` is 1 or there are fewer than
    ``min_pool_docs`` documents; otherwise on ``workers`` processes, each loading the model ``identifier``
    was loaded from: the pool :func:`started_ahead` when it has these, else a pool of its own."""
    total = sum(pq.ParquetFile(job.pending).metadata.num_rows for job in jobs)
    writers = [pq.ParquetWriter(job.out, SIGNALS_SCHEMA) for job in jobs]
    try:
        if workers <= 1 or total < min_pool_docs:
            screeners = [DocumentScreener(job.lang, identifier, job.settings) for job in jobs]
            for index, rows in _batches(jobs):
                writers[index].write_table(screen_batch(screeners[index], rows))
                on_rows(len(rows))
            return
        with contextlib.ExitStack() as own:
            pool = next((p for p in _ahead if p.serves(workers, identifier.model_path, registry)), None)
            if pool is None:
                pool = ScreeningPool(workers, identifier.model_path, registry)
                own.callback(pool.close)
            call = next(_calls)
            pending: deque[tuple[int, int, Future]] = deque()
            for index, rows in _batches(jobs):
                job = jobs[index]
                future = pool.executor.submit(_screen_in_worker, call, job.lang, job.settings, rows)
                pending.append((index, len(rows), future))
                while len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                    _collect(pending.popleft(), writers, on_rows)
            while pending:
                _collect(pending.popleft(), writers, on_rows)
    finally:
        for writer in writers:
            writer.close()


def _collect(item: tuple[int, int, Future], writers: list[pq.ParquetWriter], on_rows: Callable[[int], None]) -> None:
    index, count, future = item
    writers[index].write_table(future.result())
    on_rows(count)
