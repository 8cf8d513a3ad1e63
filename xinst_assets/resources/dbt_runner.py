"""dbt run inside the run's own process: parsed once per process, built under the warehouse lock (the embedded
file) or retried when it loses a commit race (the lakehouse).

Why not the dbt CLI in a subprocess (dagster-dbt's ``DbtCliResource.cli``): each call starts a Python process
that imports dbt and parses the project again, and it is always a *full* parse, because the partition's
``--vars`` and the run's warehouse path (part of the profile) both invalidate dbt's partial-parse state. On
two busy cores that is 10-40 s per call, and all of it under the warehouse lock, because dbt opens the DuckDB
file itself: concurrent partitions queued behind each other's parses.

Here dbt is called through its Python entry point (``dbtRunner``). The project is parsed *outside* the lock
(parsing never opens the database), and every build reuses that manifest: the partition's ``lang`` var is
applied when dbt compiles a model for execution, not at parse time. The lock is held only while dbt executes
models and tests. The parsed manifest is kept in memory, and pickled in a private per-user cache folder keyed
by the project's file contents, the warehouse path and the dbt version, so that the next run process on this
machine loads it in milliseconds instead of parsing again (2-4 s of CPU; ten run workers of a backfill start
at once, and one parses while the others wait for its result). The cache folder must belong to the user and be
closed to others, or it is not used: a pickle is code. dbt keeps global state, so one invocation runs at a time
per process; dbt-duckdb keeps its database handle open after a build, so it is closed before the lock is
released (another process may then open the file).

Which warehouse dbt builds on is the store's choice (``Store.dbt_env``: the variables dbt/profiles.yml reads,
its target among them): the embedded file, or the DuckLake lakehouse attached by dbt-duckdb. On the lakehouse
nothing is locked: concurrent builds of other partitions commit their own transactions, and a build whose
commit loses a race to one of them (DuckLake refuses a commit that deletes from a table another transaction
inserted into since it began) is run again on a fresh snapshot, as the store's own writes are. The models are
partition replaces (a delete and an insert of the partition's languages), so a build run again ends as one
run once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import pickle
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Mapping, Sequence

from xinst_assets.core.user_cache import private_cache_dir

if TYPE_CHECKING:
    from xinst_assets.store.base import RetryPolicy

_log = logging.getLogger("xinst.dbt")
WAREHOUSE_ENV = "XINST_DBT_WAREHOUSE"  # read by dbt/profiles.yml (target local)
TARGET_ENV = "XINST_DBT_TARGET"  # read by dbt/profiles.yml: local (the DuckDB file) or lakehouse
# Where dbt builds: a DuckDB file (the embedded warehouse), or the environment dbt/profiles.yml reads for a
# target (Store.dbt_env(): the lakehouse's catalog, data path and extension folder).
DbtTarget = Path | Mapping[str, str]
CACHE_ENV = "XINST_DBT_CACHE"  # where parsed manifests are kept (default: ~/.cache/xinst/dbt-manifests)
CACHE_WAIT_S = 300  # how long a process waits for another one that parses the same project
CACHE_FORMAT = "fields-v1"  # see _dump_manifest
CACHE_KEEP_S = 7 * 86400  # cached manifests unused for a week are removed (each test warehouse has its own)
_invocation_lock = threading.RLock()
_manifests: dict[str, Any] = {}
_warmed: set[str] = set()  # manifests this process has run dbt with once


@dataclass
class DbtBuildOutcome:
    """What one in-process dbt invocation did: success, its structured events (as dbt's JSON log lines), and
    the error messages dbt logged."""

    success: bool
    events: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exception: BaseException | None = None
    attempts: int = 1  # builds run (more than one when a build lost a commit race on the lakehouse)


def target_env(target: DbtTarget) -> dict[str, str]:
    """The environment dbt/profiles.yml reads for ``target`` (a DuckDB file: the ``local`` target on it)."""
    if isinstance(target, Mapping):
        return dict(target)
    return {TARGET_ENV: "local", WAREHOUSE_ENV: str(target)}


def _manifest_key(project_dir: Path, profiles_dir: Path, target: DbtTarget) -> str:
    """Changes with any file of the project (a model edited), the profile, the target and dbt's version."""
    from dbt.version import __version__ as dbt_version

    where = json.dumps(sorted(target_env(target).items()))  # hashed: a catalog's password is not written
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{dbt_version}\0{where}\0{project_dir}\0".encode())
    files = [p for folder in ("models", "macros", "tests") for p in (project_dir / folder).rglob("*") if p.is_file()]
    files += [project_dir / "dbt_project.yml", profiles_dir / "profiles.yml"]
    for path in sorted(files):
        if path.is_file():
            digest.update(f"{os.path.relpath(path, project_dir)}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def _cache_dir() -> Path | None:
    """The private folder of pickled manifests, or None when it is not safe to use."""
    return private_cache_dir("dbt-manifests", CACHE_ENV)


def _parse(project_dir: Path, profiles_dir: Path, target: DbtTarget):
    from dbt.cli.main import dbtRunner

    os.environ.setdefault("DO_NOT_TRACK", "1")
    with _target_env(target), tempfile.TemporaryDirectory(prefix="xinst-dbt-parse-") as target:
        result = dbtRunner().invoke(["parse", *_common_args(project_dir, profiles_dir, target)])
    if not result.success or result.result is None:
        raise RuntimeError(f"dbt could not parse {project_dir}: {result.exception}")
    return result.result


def _dump_manifest(manifest) -> bytes:
    """The manifest's public fields, pickled. Not the object itself: dbt's own ``Manifest.__reduce_ex__``
    passes its fields by position and has fallen behind the class (dbt 1.11 added fields before the lookups it
    passes), so an unpickled object has its lookups in the wrong slots. The private fields are caches that a
    new object builds again when needed."""
    return pickle.dumps({f.name: getattr(manifest, f.name) for f in dataclasses.fields(manifest)
                         if f.init and not f.name.startswith("_")})


def _load_manifest(data: bytes):
    from dbt.contracts.graph.manifest import Manifest

    return Manifest(**pickle.loads(data))


def _parse_or_load(project_dir: Path, profiles_dir: Path, target: DbtTarget, key: str):
    """The manifest from the cache folder, or parsed (and cached) by this process; concurrent processes wait
    for the one that parses."""
    from xinst_assets.resources.warehouse import file_lock

    cache = _cache_dir()
    if cache is None:
        return _parse(project_dir, profiles_dir, target)
    path = cache / f"{key}.pickle"
    with file_lock(cache / f"{key}.lock", exclusive=True, timeout_s=CACHE_WAIT_S):
        if path.is_file():
            try:
                manifest = _load_manifest(path.read_bytes())
                os.utime(path)  # in use: not pruned
                return manifest
            except Exception:  # a cache written by another version of a library: parse again
                path.unlink(missing_ok=True)
        manifest = _parse(project_dir, profiles_dir, target)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_bytes(_dump_manifest(manifest))
        os.replace(partial, path)
    _prune(cache)
    return manifest


def _prune(cache: Path) -> None:
    cutoff = time.time() - CACHE_KEEP_S
    for old in cache.iterdir():
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                old.unlink()


@contextlib.contextmanager
def _target_env(target: DbtTarget) -> Iterator[None]:
    """The target's variables in this process's environment (where dbt's env_var() reads them) for the block."""
    values = target_env(target)
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _common_args(project_dir: Path, profiles_dir: Path, target: str) -> list[str]:
    # The results come back through the invocation and its event callback; the target folder is temporary, so
    # dbt's JSON artifacts (manifest, run results: a few tenths of a second per invocation) are not written.
    return [
        "--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir),
        "--target-path", target, "--log-path", target, "--quiet", "--no-write-json",
    ]


def parsed_manifest(project_dir: Path, profiles_dir: Path, target: DbtTarget):
    """dbt's parsed manifest of ``project_dir`` for a target (on a DuckDB file, the database name is the file's
    stem; on the lakehouse, the lake's alias)."""
    key = _manifest_key(project_dir, profiles_dir, target)
    with _invocation_lock:
        if key not in _manifests:
            _manifests[key] = _parse_or_load(project_dir, profiles_dir, target, key)
        return _manifests[key]


def _close_duckdb_handle() -> None:
    """dbt-duckdb keeps the database open in a process-wide environment after a build: close it."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter: nothing of ours to close
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if env is not None:
            env.close()


def _warm_up(manifest, project_dir: Path, profiles_dir: Path, target: DbtTarget, args: Sequence[str]) -> None:
    """The first dbt invocation of a process spends about a second on dbt's own set-up (imports, plugins,
    macros); do it with ``dbt ls`` (which never opens the database) before the warehouse lock is taken, so
    the first build holds the lock only for its work."""
    from dbt.cli.main import dbtRunner

    key = str(id(manifest))
    with _invocation_lock:
        if key in _warmed:
            return
        _warmed.add(key)
        with _target_env(target), tempfile.TemporaryDirectory(prefix="xinst-dbt-ls-") as scratch:
            dbtRunner(manifest=manifest).invoke(
                ["ls", *_common_args(project_dir, profiles_dir, scratch), "--output", "name", *args])


def warm_up_in_background(project_dir: Path, profiles_dir: Path, target: DbtTarget) -> threading.Thread:
    """Parse (or load) the manifest and run dbt's first-invocation set-up on a daemon thread, so that a run
    whose dbt step comes after other steps does not wait for it there; the step's own :func:`dbt_build` then
    finds it done (or waits for it: one dbt invocation at a time)."""

    def warm() -> None:
        try:
            manifest = parsed_manifest(project_dir, profiles_dir, target)
            _warm_up(manifest, project_dir, profiles_dir, target, ["--select", "tag:filtering"])
        except Exception:  # only an optimisation: the build reports any real problem itself
            logging.getLogger("xinst.dbt").debug("dbt warm-up failed", exc_info=True)

    thread = threading.Thread(target=warm, name="dbt-warm-up", daemon=True)
    thread.start()
    return thread


def is_commit_conflict(outcome: DbtBuildOutcome) -> bool:
    """Whether a failed build failed because it lost a race to a concurrent writer, so that running it again
    (on a fresh snapshot) can succeed: a commit refused by DuckLake's conflict check ("Transaction conflict"),
    or a model's first build that found its table created meanwhile by another build (dbt decided to create
    it before the other one committed; built again, it sees the table and inserts its partition)."""
    messages = [m.lower() for m in (*outcome.errors, str(outcome.exception or ""))]
    return not outcome.success and any(
        ("conflict" in m and "transaction" in m) or ("catalog error" in m and "already exists" in m)
        for m in messages)


def dbt_build(
    project_dir: Path,
    profiles_dir: Path,
    target: DbtTarget,
    args: Sequence[str],
    hold_warehouse: Callable[[], ContextManager[Any]],
    retry: "RetryPolicy | None" = None,
) -> DbtBuildOutcome:
    """``dbt build <args>`` in this process on ``target`` (a DuckDB file, or a target's environment: see
    :func:`target_env`); ``hold_warehouse()`` is entered around the execution only (after parsing). With
    ``retry`` (the lakehouse), a build that lost a commit race is run again, up to ``retry.attempts`` times,
    after a random wait; the outcome is the last build's (``attempts`` says how many ran). Never raises for a
    failing model or test: see ``success``/``errors``."""
    manifest = parsed_manifest(project_dir, profiles_dir, target)
    _warm_up(manifest, project_dir, profiles_dir, target, args)
    attempts = retry.attempts if retry is not None else 1
    for attempt in range(1, attempts + 1):
        outcome = _build_once(manifest, project_dir, profiles_dir, target, args, hold_warehouse)
        outcome.attempts = attempt
        if retry is None or not is_commit_conflict(outcome) or attempt == attempts:
            return outcome
        _log.info("dbt build lost a commit race (attempt %d of %d), building again: %s", attempt, attempts,
                  outcome.errors[-1].splitlines()[-1] if outcome.errors else outcome.exception)
        time.sleep(retry.wait_s(attempt))
    raise AssertionError("unreachable")


def _build_once(manifest, project_dir: Path, profiles_dir: Path, target: DbtTarget, args: Sequence[str],
                hold_warehouse: Callable[[], ContextManager[Any]]) -> DbtBuildOutcome:
    from dbt.cli.main import dbtRunner
    from dbt_common.events.base_types import EventLevel
    from dbt_common.events.functions import msg_to_dict

    outcome = DbtBuildOutcome(success=False)

    def keep(message) -> None:
        event = msg_to_dict(message)
        outcome.events.append(event)
        info = event.get("info", {})
        if info.get("level") == EventLevel.ERROR.value and info.get("msg"):
            outcome.errors.append(info["msg"])

    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    with _invocation_lock, _target_env(target), \
            tempfile.TemporaryDirectory(prefix="xinst-dbt-build-") as scratch:
        runner = dbtRunner(manifest=manifest, callbacks=[keep])
        with hold_warehouse():
            try:
                result = runner.invoke(["build", *_common_args(project_dir, profiles_dir, scratch), *args])
            finally:
                _close_duckdb_handle()
    outcome.success = bool(result.success)
    outcome.exception = result.exception
    if result.exception is not None and not outcome.errors:
        outcome.errors.append(f"{type(result.exception).__name__}: {result.exception}")
    return outcome
