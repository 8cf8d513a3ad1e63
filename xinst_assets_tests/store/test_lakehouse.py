"""The lakehouse backend on a real Postgres catalog and a local data folder: attach, DDL, writes from
several processes at once, a commit race run again, a writer killed mid-transaction."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from xinst_assets.store import Store, TransactionStats, WriteConflict, copy_warehouse
from xinst_assets.store.base import RetryPolicy, replace_partition_rows, run_transaction
from xinst_assets.store.extensions import (
    ExtensionNotInstalled,
    connection_config,
    duckdb_platform,
    extension_directory,
    wheel_extension_file,
)
from xinst_assets.store.lakehouse import claim_partition, redact
from xinst_assets_tests import processes

ROWS = "SELECT ? AS lang, range AS i, ? AS r FROM range(?)"


def _env(store: Store) -> dict[str, str]:
    return {**os.environ, "XINST_LAKEHOUSE_CATALOG": os.environ["XINST_LAKEHOUSE_CATALOG"]}


def _store_args(store: Store) -> list[str]:
    return [store.data_path, store.extension_dir or ""]


OPEN_STORE = r"""
import os, sys
from xinst_assets.store import Store
store = Store(backend="lakehouse", data_path=sys.argv[1], extension_dir=sys.argv[2] or None)
"""


def test_extension_files_are_laid_out_where_duckdb_looks_and_load_by_name_without_downloading(tmp_path: Path):
    root = extension_directory(tmp_path / "ext")
    link = root / f"v{duckdb.__version__}" / duckdb_platform() / "ducklake.duckdb_extension"
    assert link.is_symlink() and link.resolve() == wheel_extension_file("ducklake").resolve()
    assert extension_directory(tmp_path / "ext") == root  # idempotent
    with duckdb.connect(config=connection_config(root)) as con:
        con.execute("LOAD ducklake")
        con.execute("LOAD postgres_scanner")
        loaded = dict(con.execute("SELECT extension_name, install_path FROM duckdb_extensions() "
                                  "WHERE loaded AND extension_name IN ('ducklake', 'postgres_scanner')").fetchall())
    assert set(loaded) == {"ducklake", "postgres_scanner"}
    assert all(path.startswith(str(root)) for path in loaded.values())


def test_an_extension_without_its_wheel_is_reported_with_the_package_to_install():
    with pytest.raises(ExtensionNotInstalled, match="pip install 'duckdb-extension-no-such-thing=="):
        wheel_extension_file("no_such_thing")


def test_the_catalog_password_never_appears_in_descriptions_or_errors(monkeypatch, tmp_path: Path):
    assert redact("postgresql://xinst:s3cret@db:5432/lake") == "postgresql://xinst:***@db:5432/lake"
    assert redact("host=db password=s3cret dbname=lake") == "host=db password=*** dbname=lake"
    monkeypatch.setenv("XINST_LAKEHOUSE_CATALOG", "postgresql://xinst:s3cret@127.0.0.1:1/none")
    store = Store(backend="lakehouse", data_path=str(tmp_path / "lake"), extension_dir=str(tmp_path / "ext"))
    assert "s3cret" not in store.describe()
    with pytest.raises(RuntimeError, match="cannot attach the lakehouse") as error:
        store.table_exists("anything")
    assert "s3cret" not in str(error.value)


def test_the_store_is_chosen_by_the_environment_and_a_missing_setting_names_what_to_set(tmp_path: Path, monkeypatch):
    assert Store.from_env(tmp_path, {}).backend == "embedded"
    assert Store.from_env(tmp_path, {}).path == str(tmp_path / "warehouse.duckdb")
    lake = Store.from_env(tmp_path, {"XINST_STORE": "lakehouse", "XINST_LAKEHOUSE_DATA": "s3://b/x",
                                     "XINST_LAKEHOUSE_S3_ENDPOINT": "127.0.0.1:9000"})
    assert (lake.backend, lake.data_path, lake.s3_url_style) == ("lakehouse", "s3://b/x", "path")
    with pytest.raises(ValueError, match="XINST_STORE"):
        Store.from_env(tmp_path, {"XINST_STORE": "sqlite"})
    monkeypatch.delenv("XINST_LAKEHOUSE_CATALOG", raising=False)
    with pytest.raises(ValueError, match="XINST_LAKEHOUSE_CATALOG"):
        lake.open()
    monkeypatch.setenv("XINST_LAKEHOUSE_CATALOG", "postgresql://x@h/db")
    with pytest.raises(ValueError, match="data path"):
        Store(backend="lakehouse").open()


def test_tables_are_created_altered_and_written_in_the_lakehouse_and_another_process_reads_them(lake_store: Store):
    with lake_store.write() as con:
        con.execute("CREATE TABLE docs (lang VARCHAR NOT NULL, i BIGINT, r BIGINT)")
    assert lake_store.replace_partition("docs", "sw", ROWS, ["sw", 0, 1000]) == 1000
    with lake_store.write() as con:  # a migration: a new column, filled for the existing rows
        con.execute("ALTER TABLE docs ADD COLUMN note VARCHAR")
        con.execute("UPDATE docs SET note = 'v2'")
    assert lake_store.table_exists("docs") and not lake_store.table_exists("nothing_here")
    reader = processes.run(
        [sys.executable, "-c", OPEN_STORE + "with store.read() as con:\n"
         "    print(con.execute(\"SELECT count(*), count(DISTINCT note) FROM docs WHERE lang = 'sw'\").fetchone())",
         *_store_args(lake_store)], env=_env(lake_store))
    assert reader.returncode == 0, reader.stderr[-2000:]
    assert reader.stdout.strip() == "(1000, 1)"
    # the data are Parquet files under the data path; the catalog is in Postgres
    assert list(Path(lake_store.data_path).rglob("*.parquet"))


def test_a_lakehouse_table_has_no_primary_key_so_a_partition_is_replaced_by_delete_and_insert(lake_store: Store):
    with lake_store.write() as con:
        with pytest.raises(duckdb.Error, match="PRIMARY KEY"):
            con.execute("CREATE TABLE keyed (id BIGINT PRIMARY KEY)")
    with lake_store.write() as con:
        con.execute("CREATE TABLE docs (lang VARCHAR, i BIGINT, r BIGINT)")
    for round_ in range(3):  # idempotent: running it again gives the same table
        lake_store.replace_partition("docs", "fi", ROWS, ["fi", round_, 500])
    with lake_store.read() as con:
        assert con.execute("SELECT count(*), min(r), max(r) FROM docs").fetchone() == (500, 2, 2)


def test_a_write_that_loses_a_commit_race_runs_again_on_a_fresh_snapshot_and_keeps_both_writes(lake_store: Store):
    with lake_store.write() as con:
        con.execute("CREATE TABLE docs (lang VARCHAR, i BIGINT, r BIGINT)")
    lake_store.replace_partition("docs", "fi", ROWS, ["fi", 0, 100])
    lake_store.replace_partition("docs", "sw", ROWS, ["sw", 0, 100])
    rival = Store(backend="lakehouse", data_path=lake_store.data_path, extension_dir=lake_store.extension_dir)

    def replace_fi(con):
        con.execute("DELETE FROM docs WHERE lang = 'fi'")
        con.execute(ROWS.replace("SELECT", "INSERT INTO docs SELECT", 1), ["fi", 1, 100])
        if stats.attempts == 1:
            # Another writer replaces another language's rows and commits first, while this one is open:
            # DuckLake then refuses this commit (it inserts into a table the other one deleted from).
            rival.replace_partition("docs", "sw", ROWS, ["sw", 1, 100])
        return "done"

    stats = TransactionStats()
    assert lake_store.transaction(replace_fi, stats) == "done"
    assert (stats.attempts, stats.conflicts) == (2, 1)
    with lake_store.read() as con:
        assert con.execute("SELECT lang, count(*), min(r), max(r) FROM docs GROUP BY lang ORDER BY lang").fetchall() \
            == [("fi", 100, 1, 1), ("sw", 100, 1, 1)]


def test_a_write_that_loses_every_race_fails_with_a_write_conflict_and_other_errors_are_not_retried():
    attempts = []

    @__import__("contextlib").contextmanager
    def connect():
        with duckdb.connect() as con:
            yield con

    def always_conflicting(con):
        attempts.append(1)
        raise duckdb.TransactionException("Transaction conflict - simulated")

    with pytest.raises(WriteConflict, match="lost 3 commit races"):
        run_transaction(connect, always_conflicting, RetryPolicy(attempts=3, first_wait_s=0.0))
    assert len(attempts) == 3

    def failing(con):
        attempts.append(1)
        raise duckdb.CatalogException("Table with name nope does not exist")

    attempts.clear()
    with pytest.raises(duckdb.CatalogException):
        run_transaction(connect, failing, RetryPolicy(attempts=3, first_wait_s=0.0))
    assert len(attempts) == 1


def test_two_replaces_of_the_same_empty_partition_conflict_instead_of_both_landing(lake_store: Store):
    # Deleting nothing is no write, so without the partition's marker neither commit would conflict and the
    # partition would hold both writers' rows.
    with lake_store.write() as con:
        con.execute("CREATE TABLE docs (lang VARCHAR, i BIGINT, r BIGINT)")
    backend = lake_store.open()
    rival = Store(backend="lakehouse", data_path=lake_store.data_path, extension_dir=lake_store.extension_dir)
    backend.prepare_partition("docs", "bn")

    def replace_bn(con):
        claim_partition(con, "docs", "bn")
        replace_partition_rows(con, "docs", "bn", ROWS, ["bn", 1, 300])
        if stats.attempts == 1:
            rival.replace_partition("docs", "bn", ROWS, ["bn", 2, 300])

    stats = TransactionStats()
    backend.transaction(replace_bn, stats)
    assert stats.conflicts == 1
    with lake_store.read() as con:
        assert con.execute("SELECT count(*), min(r), max(r) FROM docs").fetchone() == (300, 1, 1)


WRITER = OPEN_STORE + r"""
from xinst_assets.store import TransactionStats
lang, writer, rounds, rows = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
conflicts = 0
for r in range(rounds):
    stats = TransactionStats()
    store.replace_partition("docs", lang, "SELECT ? AS lang, range AS i, ? AS r, ? AS writer FROM range(?)",
                            [lang, r, writer, rows], stats)
    conflicts += stats.conflicts
    with store.read() as con:
        n, writers = con.execute("SELECT count(*), count(DISTINCT writer) FROM docs WHERE lang = ?", [lang]).fetchone()
    assert n == rows and writers == 1, (n, writers)  # never a half-replaced or mixed partition
print("conflicts", conflicts)
"""


@pytest.mark.slow
def test_partition_replaces_from_six_processes_at_once_lose_no_write_and_never_mix_partitions(lake_store: Store):
    with lake_store.write() as con:
        con.execute("CREATE TABLE docs (lang VARCHAR, i BIGINT, r BIGINT, writer INTEGER)")
    lake_store.table_exists("docs")  # lays out the extensions once, before the writers start
    # five languages, and a sixth writer racing the first one on the same language
    plan = [("fi", 0), ("sw", 1), ("ta", 2), ("ur", 3), ("th", 4), ("fi", 5)]
    rounds, rows = 4, 5000
    done = processes.finish(*[processes.start([sys.executable, "-c", WRITER, *_store_args(lake_store), lang,
                                               str(writer), str(rounds), str(rows)], env=_env(lake_store))
                              for lang, writer in plan])
    assert [p.returncode for p in done] == [0] * len(plan), [p.stderr[-3000:] for p in done]
    with lake_store.read() as con:
        final = con.execute("SELECT lang, count(*), count(DISTINCT writer), min(r), max(r), count(DISTINCT i) "
                            "FROM docs GROUP BY lang ORDER BY lang").fetchall()
    assert final == [(lang, rows, 1, rounds - 1, rounds - 1, rows) for lang in ["fi", "sw", "ta", "th", "ur"]]


KILLED_WRITER = OPEN_STORE + r"""
marker = sys.argv[3]
def work(con):
    con.execute("DELETE FROM docs WHERE lang = 'sw'")
    con.execute("INSERT INTO docs SELECT 'sw', range, 99 FROM range(20000)")
    open(marker, "w").close()   # the rows are written, the transaction is not committed
    sys.stdin.readline()        # wait here until killed
store.transaction(work)
"""


def test_a_writer_killed_before_its_commit_leaves_the_previous_state_and_blocks_no_one(lake_store: Store,
                                                                                      tmp_path: Path):
    with lake_store.write() as con:
        con.execute("CREATE TABLE docs (lang VARCHAR, i BIGINT, r BIGINT)")
    lake_store.replace_partition("docs", "sw", ROWS, ["sw", 1, 1000])
    marker = tmp_path / "inside-the-transaction"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, *_store_args(lake_store), str(marker)],
                              env=_env(lake_store), stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists():  # waits for the writer's signal, whatever the machine's speed
        assert writer.poll() is None, writer.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "the writer never reached its transaction"
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with lake_store.read() as con:
        assert con.execute("SELECT count(*), min(r), max(r) FROM docs").fetchone() == (1000, 1, 1)
    # nothing is left locked: the next writer commits at once
    assert lake_store.replace_partition("docs", "sw", ROWS, ["sw", 2, 1000]) == 1000
    # the dead writer's uncommitted files are orphans that upkeep removes; the table is unchanged
    assert lake_store.open().maintain(older_than_hours=0)["orphans_deleted"] >= 1
    with lake_store.read() as con:
        assert con.execute("SELECT count(*), min(r), max(r) FROM docs").fetchone() == (1000, 2, 2)


def test_a_session_keeps_one_connection_and_another_thread_can_join_it(lake_store: Store):
    backend = lake_store.open()
    with backend.session() as held:
        with backend.write() as con:
            assert con is held.connection
            con.execute("CREATE TABLE docs (lang VARCHAR, i BIGINT, r BIGINT)")
        joined = held.for_thread()
        seen = []

        def other_thread():
            with joined:
                backend.transaction(lambda con: con.execute("INSERT INTO docs VALUES ('ta', 1, 1)"))
                with backend.read() as con:
                    seen.append(con.execute("SELECT count(*) FROM docs").fetchone()[0])

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert seen == [1]
        with backend.read() as con:
            assert con.execute("SELECT count(*) FROM docs").fetchone()[0] == 1


def test_the_embedded_store_is_the_warehouse_file_with_its_lock(tmp_path: Path):
    store = Store(path=str(tmp_path / "warehouse.duckdb"))
    with store.write() as con:
        con.execute("CREATE TABLE docs (lang VARCHAR, i BIGINT, r BIGINT)")
    stats = TransactionStats()
    assert store.replace_partition("docs", "vi", ROWS, ["vi", 0, 10], stats) == 10
    assert stats.attempts == 1 and store.table_exists("docs")
    assert (tmp_path / "warehouse.duckdb.lock").exists()
    assert store.dbt_env() == {"XINST_DBT_TARGET": "local", "XINST_DBT_WAREHOUSE": str(tmp_path / "warehouse.duckdb")}


def test_an_embedded_warehouse_is_copied_into_the_lakehouse_with_its_columns_and_rows_in_order(
        lake_store: Store, tmp_path: Path):
    source = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(source)) as con:
        con.execute("CREATE TABLE raw_shards (lang VARCHAR NOT NULL, shard VARCHAR NOT NULL, rows BIGINT, "
                    "PRIMARY KEY (lang, shard))")
        con.execute("INSERT INTO raw_shards SELECT 'sw', 'part-' || (9 - range), range FROM range(10)")
        con.execute("CREATE TABLE notes (id INTEGER, body VARCHAR)")
    assert copy_warehouse(source, lake_store.open()) == {"notes": 0, "raw_shards": 10}
    with lake_store.read() as con:
        assert [r[0] for r in con.execute("SELECT shard FROM raw_shards").fetchall()] \
            == [f"part-{9 - i}" for i in range(10)]
        nullable = dict(con.execute("SELECT column_name, is_nullable FROM information_schema.columns "
                                    "WHERE table_catalog = 'lake' AND table_name = 'raw_shards'").fetchall())
    assert nullable == {"lang": "NO", "shard": "NO", "rows": "YES"}
    # the source file stays as it was, and another copy replaces the tables instead of appending
    assert copy_warehouse(source, lake_store.open(), ["raw_shards"]) == {"raw_shards": 10}
    with lake_store.read() as con:
        assert con.execute("SELECT count(*) FROM raw_shards").fetchone()[0] == 10


FIRST_ATTACH = OPEN_STORE + r"""
lang = sys.argv[3]
def work(con):
    con.execute("CREATE TABLE IF NOT EXISTS firsts (lang VARCHAR)")
    con.execute("INSERT INTO firsts VALUES (?)", [lang])
store.transaction(work)
"""


@pytest.mark.slow
def test_six_processes_attaching_a_new_catalog_at_once_all_attach_and_write(catalog_uri: str, tmp_path: Path,
                                                                           monkeypatch):
    """The first attach creates the catalog (a schema and DuckLake's tables in Postgres): processes that start
    together on a new lake race to create it, and the losers attach the winner's catalog instead of failing."""
    monkeypatch.setenv("XINST_LAKEHOUSE_CATALOG", catalog_uri)
    store = Store(backend="lakehouse", data_path=str(tmp_path / "lake"), extension_dir=str(tmp_path / "ext"))
    from xinst_assets.store.extensions import extension_directory

    extension_directory(tmp_path / "ext")  # laid out once; the catalog stays new until the processes attach
    langs = ["fi", "sw", "ta", "ur", "th", "bn"]
    done = processes.finish(*[processes.start([sys.executable, "-c", FIRST_ATTACH, *_store_args(store), lang],
                                              env=_env(store)) for lang in langs])
    assert [p.returncode for p in done] == [0] * len(langs), [p.stderr[-3000:] for p in done]
    with store.read() as con:
        assert sorted(r for (r,) in con.execute("SELECT lang FROM firsts").fetchall()) == sorted(langs)
