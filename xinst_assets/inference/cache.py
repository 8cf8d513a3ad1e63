"""A content-addressed cache of model outputs in DuckDB: a rerun never repeats a finished generation.

One table, ``generation_cache(key, model, task, output, created_at)``. ``key`` is a stable hash of (backend
fingerprint, task, decoding parameters or choice list, exact prompt), so another model, other parameters or
another task never see each other's outputs. ``output`` is JSON: a :class:`Generation` for generation, the
choice distribution for choice scoring; ``task`` (e.g. ``instruction_generation``) lets a user inspect or
delete one stage's entries in SQL.

No connection is held while the model works (the embedded warehouse allows one writer at a time), and the
writes go through the store (:mod:`xinst_assets.store.content_cache`): on the lakehouse, where the key cannot be
a PRIMARY KEY, each write inserts the keys not yet cached, in a transaction run again if it loses a commit race.
:func:`generate_cached` and :func:`choice_logprobs_cached`:

1. look up every key of the batch in ONE read (``lookup``);
2. call the backend only for the misses (repeated prompts are computed once), in chunks of ``flush_every``;
3. insert each chunk's results in one short write transaction, so a crash loses at most one chunk and a rerun
   resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

import duckdb
import pyarrow as pa

from xinst_assets.core.prompts import DecodingParams
from xinst_assets.core.text import stable_hash
from xinst_assets.inference.base import Generation, InferenceBackend, check_prompts
from xinst_assets.store.content_cache import (
    Transaction, create_keyed_table, insert_absent, write_in, writer_of,
)

TABLE = "generation_cache"
COLUMNS = "model VARCHAR NOT NULL, task VARCHAR NOT NULL, output JSON NOT NULL, created_at TIMESTAMP NOT NULL"
# Results between two cache writes. A 7-8B model on one GPU generates a 256-prompt chunk of instructions in
# roughly 10-60 s; a write of 256 rows takes ~10-50 ms (the lock wait included when no other run writes), so
# writes cost well under 1% and a crash loses under a minute of work. Larger chunks also give the backend more
# prompts to sort by length.
DEFAULT_FLUSH_EVERY = 256

ConnectionFactory = Callable[[], contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]]


def generation_key(fingerprint: str, task: str, params: DecodingParams, prompt: str) -> str:
    """The cache key of one generation: backend fingerprint, task, decoding parameters and the exact prompt."""
    return stable_hash("generate", fingerprint, task, params.canonical_json(), prompt)


def choice_key(fingerprint: str, task: str, choices: Sequence[str], prompt: str) -> str:
    """The cache key of one choice distribution: backend fingerprint, task, the choices and the exact prompt."""
    return stable_hash("choice", fingerprint, task, json.dumps(list(choices)), prompt)


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``generation_cache`` if it does not exist (needs a writable connection; the key is a PRIMARY KEY
    where the backend has them)."""
    create_keyed_table(con, TABLE, COLUMNS)


def _table_exists(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = current_schema()",
        [TABLE],
    ).fetchone()
    return bool(row and row[0])


@dataclass
class CacheStats:
    """What one cached call did. ``hits``/``misses`` count distinct prompts; ``backend_calls`` counts calls
    into the backend (0 when everything was cached); ``stored`` counts rows written to the cache."""

    requested: int = 0
    unique: int = 0
    hits: int = 0
    misses: int = 0
    backend_calls: int = 0
    stored: int = 0
    lookup_s: float = 0.0
    backend_s: float = 0.0
    write_s: float = 0.0

    def add(self, other: CacheStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class GenerationCache:
    """Reads and writes ``generation_cache`` through short-lived connections.

    ``read`` and ``write`` return context managers that yield a DuckDB connection (``Warehouse.read`` and
    ``Warehouse.write`` fit: the write one commits on exit). Either may be ``None``: no lookup (always compute)
    or no storing (a dry run). ``transaction`` (a store's: run again on a lost commit race), when given, runs
    the writes instead of ``write``. :meth:`add` buffers results and writes them every ``flush_every`` rows;
    use the cache as a context manager (or call :meth:`flush`) so the last partial chunk is written too, also
    when the stage fails midway.
    """

    def __init__(
        self,
        read: ConnectionFactory | None,
        write: ConnectionFactory | None,
        flush_every: int = DEFAULT_FLUSH_EVERY,
        transaction: Transaction | None = None,
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be at least 1, got {flush_every}")
        self._read, self._write, self.flush_every = read, write, flush_every
        self._transaction = transaction if write is not None else None
        self._buffer: dict[str, tuple[str, str, str]] = {}
        self.writes = 0  # write transactions done (for tests and metadata)
        self.rows_written = 0  # rows offered to those transactions

    @classmethod
    def from_warehouse(cls, warehouse: Any, flush_every: int = DEFAULT_FLUSH_EVERY) -> GenerationCache:
        """A cache in the warehouse of a ``Store``, a store backend or a ``Warehouse`` (writes are store
        transactions: retried on the lakehouse), or of anything with ``read()`` and ``write()``."""
        return cls(warehouse.read, warehouse.write, flush_every, transaction=writer_of(warehouse))

    @classmethod
    def in_memory(cls, flush_every: int = DEFAULT_FLUSH_EVERY) -> GenerationCache:
        """A cache in a private in-memory DuckDB (for benchmarks and notebooks; gone when the process ends)."""
        con = duckdb.connect()

        @contextlib.contextmanager
        def use() -> Iterator[duckdb.DuckDBPyConnection]:
            yield con

        return cls(use, use, flush_every)

    def lookup(self, keys: Sequence[str]) -> dict[str, Any]:
        """Cached outputs (decoded JSON) for ``keys`` in one query; keys not in the cache are absent."""
        unique = list(dict.fromkeys(keys))
        if not unique or self._read is None:
            return {}
        with self._read() as con:
            if not _table_exists(con):
                return {}
            wanted = pa.table({"key": pa.array(unique, type=pa.string())})
            con.register("_xinst_wanted_generation_keys", wanted)
            try:
                rows = con.execute(
                    f"SELECT c.key, c.output FROM {TABLE} c JOIN _xinst_wanted_generation_keys w USING (key)"
                ).fetchall()
            finally:
                con.unregister("_xinst_wanted_generation_keys")
        return {key: json.loads(output) for key, output in rows}

    def add(self, key: str, model: str, task: str, output: Any) -> None:
        """Buffer one result; the buffer is written once it holds ``flush_every`` results."""
        self._buffer[key] = (model, task, json.dumps(output, ensure_ascii=False))
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> int:
        """Write the buffered results in one transaction (existing keys are kept); return how many were offered."""
        if not self._buffer:
            return 0
        if self._write is None:
            count = len(self._buffer)
            self._buffer.clear()
            return count
        keys = list(self._buffer)
        models, tasks, outputs = zip(*self._buffer.values())
        table = pa.table(
            {
                "key": pa.array(keys, type=pa.string()),
                "model": pa.array(models, type=pa.string()),
                "task": pa.array(tasks, type=pa.string()),
                "output": pa.array(outputs, type=pa.string()),
            }
        )

        def work(con: duckdb.DuckDBPyConnection) -> int:
            ensure_table(con)
            return insert_absent(con, TABLE, table, "n.key, n.model, n.task, n.output::JSON, "
                                                    "current_timestamp::TIMESTAMP")

        write_in(self._transaction, self._write, work)
        self._buffer.clear()
        self.writes += 1
        self.rows_written += len(keys)
        return len(keys)

    @property
    def pending(self) -> int:
        """Results buffered and not yet written."""
        return len(self._buffer)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()  # also on error: what was computed is kept, so a rerun resumes


def _plan(keys: list[str]) -> tuple[dict[str, int], list[str]]:
    """First index of each distinct key, and the distinct keys in input order."""
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    return first, list(first)


def _run_cached(
    keys: list[str],
    prompts: list[str],
    cache: GenerationCache | None,
    compute: Callable[[list[str]], list[Any]],
    model: str,
    task: str,
    on_progress: Callable[[int], None] | None,
) -> tuple[list[Any], CacheStats]:
    """The shared round trip: one lookup, compute misses in chunks (longest prompts first), store each chunk."""
    stats = CacheStats(requested=len(prompts))
    first, unique = _plan(keys)
    stats.unique = len(unique)
    started = time.perf_counter()
    found = cache.lookup(unique) if cache is not None else {}
    stats.lookup_s = time.perf_counter() - started
    stats.hits = len(found)
    missing = [k for k in unique if k not in found]
    stats.misses = len(missing)
    # Longest first, so each chunk holds prompts of similar length (less padding inside the backend's batches).
    missing.sort(key=lambda k: -len(prompts[first[k]]))
    chunk = cache.flush_every if cache is not None else max(len(missing), 1)
    written_before = cache.rows_written if cache is not None else 0
    for start in range(0, len(missing), chunk):
        part = missing[start : start + chunk]
        started = time.perf_counter()
        outputs = compute([prompts[first[k]] for k in part])
        stats.backend_s += time.perf_counter() - started
        stats.backend_calls += 1
        if len(outputs) != len(part):
            raise RuntimeError(f"the backend returned {len(outputs)} outputs for {len(part)} prompts")
        started = time.perf_counter()
        for key, output in zip(part, outputs):
            found[key] = output
            if cache is not None:
                cache.add(key, model, task, output)
        if cache is not None:
            cache.flush()
        stats.write_s += time.perf_counter() - started
        if on_progress is not None:
            on_progress(len(part))
    if cache is not None:
        stats.stored = cache.rows_written - written_before
    return [found[k] for k in keys], stats


def generate_cached(
    backend: InferenceBackend,
    cache: GenerationCache | None,
    prompts: Sequence[str],
    params: DecodingParams,
    task: str,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[Generation], CacheStats]:
    """Generations for ``prompts`` (aligned), from the cache where possible; new ones are stored.

    ``on_progress(n)`` is called after each chunk of ``n`` new generations. With ``cache=None`` this is a plain
    (deduplicated) backend call.
    """
    prompts = check_prompts(prompts)
    fingerprint = backend.fingerprint()
    keys = [generation_key(fingerprint, task, params, p) for p in prompts]

    def compute(batch: list[str]) -> list[dict[str, Any]]:
        return [g.to_dict() for g in backend.generate(batch, params)]

    outputs, stats = _run_cached(keys, prompts, cache, compute, fingerprint, task, on_progress)
    return [Generation.from_dict(o) for o in outputs], stats


def choice_logprobs_cached(
    backend: InferenceBackend,
    cache: GenerationCache | None,
    prompts: Sequence[str],
    choices: Sequence[str],
    task: str,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, float]], CacheStats]:
    """Choice distributions for ``prompts`` (aligned), from the cache where possible; new ones are stored."""
    prompts = check_prompts(prompts)
    choices = list(choices)
    fingerprint = backend.fingerprint()
    keys = [choice_key(fingerprint, task, choices, p) for p in prompts]

    def compute(batch: list[str]) -> list[dict[str, float]]:
        return backend.choice_logprobs(batch, choices)

    outputs, stats = _run_cached(keys, prompts, cache, compute, fingerprint, task, on_progress)
    return [{c: float(d[c]) for c in choices} if d else {} for d in outputs], stats


class CachedBackend:
    """An :class:`InferenceBackend` that answers from the cache first; ``stats`` accumulates over calls.

    ``task`` names the stage (it is part of every key). ``close()`` writes what is buffered and closes the
    wrapped backend.
    """

    def __init__(self, backend: InferenceBackend, cache: GenerationCache, task: str) -> None:
        self.backend, self.cache, self.task = backend, cache, task
        self.stats = CacheStats()

    def generate(self, prompts: list[str], params: DecodingParams) -> list[Generation]:
        outputs, stats = generate_cached(self.backend, self.cache, prompts, params, self.task)
        self.stats.add(stats)
        return outputs

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float]]:
        outputs, stats = choice_logprobs_cached(self.backend, self.cache, prompts, choices, self.task)
        self.stats.add(stats)
        return outputs

    def fingerprint(self) -> str:
        return self.backend.fingerprint()

    def close(self) -> None:
        self.cache.flush()
        self.backend.close()
