"""Warehouse sessions: one connection for a batch of windows, each write its own transaction, the lock held."""

import threading
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest

from xinst_assets.resources.warehouse import Warehouse, WarehouseLockTimeout, file_lock


def test_windows_in_a_session_share_one_connection_and_commit_one_by_one(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    with warehouse.write() as con:
        con.execute("CREATE TABLE t (lang VARCHAR, n INTEGER)")
    with warehouse.session():
        with warehouse.write() as first:
            first.execute("INSERT INTO t VALUES ('sw', 1)")
        with pytest.raises(RuntimeError):
            with warehouse.write() as second:
                second.execute("INSERT INTO t VALUES ('fi', 2)")
                raise RuntimeError("this language fails")
        with warehouse.read() as reader:
            assert reader is first  # the session's connection, no new open
            assert reader.execute("SELECT * FROM t").fetchall() == [("sw", 1)]
        assert warehouse.export_partition("SELECT * FROM t", None, tmp_path / "t.parquet") == 1
        with warehouse.session():  # nested: the same session
            with warehouse.read() as nested:
                assert nested is first
    # Closed with the session: the committed window is in the file, the failed one is not.
    with duckdb.connect(str(warehouse.db_path), read_only=True) as con:
        assert con.execute("SELECT * FROM t").fetchall() == [("sw", 1)]


def test_a_session_holds_the_warehouse_lock_until_it_ends(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    outcome: dict[str, object] = {}

    def other_run() -> None:  # another thread stands for another process: it has its own lock descriptor
        try:
            with file_lock(warehouse.lock_path, exclusive=False, timeout_s=0.3):
                outcome["got"] = True
        except WarehouseLockTimeout as error:
            outcome["timeout"] = error

    with warehouse.session():
        thread = threading.Thread(target=other_run)
        thread.start()
        thread.join()
    assert "timeout" in outcome
    thread = threading.Thread(target=other_run)
    thread.start()
    thread.join()
    assert outcome.get("got") is True


def _lock_is_free(warehouse: Warehouse, within_s: float = 0.05) -> bool:
    """Whether another run (a thread with its own lock descriptor) can take the warehouse lock within
    ``within_s``."""
    outcome: dict[str, bool] = {}

    def other_run() -> None:
        try:
            with file_lock(warehouse.lock_path, exclusive=True, timeout_s=within_s):
                outcome["free"] = True
        except WarehouseLockTimeout:
            outcome["free"] = False

    thread = threading.Thread(target=other_run)
    thread.start()
    thread.join()
    return outcome["free"]


def test_another_thread_joins_a_session_and_writes_while_the_holder_reads(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    with warehouse.write() as con:
        con.execute("CREATE TABLE t (lang VARCHAR, n INTEGER)")
        con.execute("INSERT INTO t SELECT 'sw', range FROM range(1000)")
    writing, read_meanwhile = threading.Event(), threading.Event()

    def writer(joined) -> list:
        with joined:
            with warehouse.write() as con:  # no second lock: the session's covers this thread
                assert con is not holder_connection
                con.execute("INSERT INTO t VALUES ('fi', 1)")
                writing.set()
                read_meanwhile.wait()  # the holder reads while this transaction is open (it always sets this)
            with pytest.raises(RuntimeError):
                with warehouse.write() as con:
                    con.execute("INSERT INTO t VALUES ('fi', 2)")
                    raise RuntimeError("this language fails")
            with warehouse.read() as con:
                return con.execute("SELECT lang, count(*) FROM t GROUP BY lang ORDER BY lang").fetchall()

    with warehouse.session() as held, ThreadPoolExecutor(max_workers=1) as pool:
        holder_connection = held.connection
        result = pool.submit(writer, held.for_thread())
        try:
            while not writing.wait(0.05):  # the writer's own signal, however slow the machine
                assert not result.done(), f"the writer ended before writing: {result.result()}"
            with warehouse.read() as con:
                assert con is holder_connection
                # The writer's open transaction is not seen; the reader is not blocked by it.
                assert con.execute("SELECT count(*) FROM t WHERE lang = 'fi'").fetchone() == (0,)
        finally:
            read_meanwhile.set()
        assert result.result() == [("fi", 1), ("sw", 1000)]
        assert not _lock_is_free(warehouse)  # the session still holds it
        with warehouse.read() as con:
            assert con.execute("SELECT count(*) FROM t WHERE lang = 'fi'").fetchone() == (1,)
    assert _lock_is_free(warehouse)
    with duckdb.connect(str(warehouse.db_path), read_only=True) as con:
        assert con.execute("SELECT lang, count(*) FROM t GROUP BY lang ORDER BY lang").fetchall() == [
            ("fi", 1), ("sw", 1000)]


def test_a_thread_with_a_session_of_its_own_cannot_join_another(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    with warehouse.session() as held:
        with pytest.raises(RuntimeError, match="already has a session"):
            with held.for_thread():  # this very thread holds it
                pass
        with warehouse.write() as con:  # the session is unharmed
            con.execute("CREATE TABLE t (n INTEGER)")
