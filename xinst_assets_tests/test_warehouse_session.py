"""Warehouse sessions: one connection for a batch of windows, each write its own transaction, the lock held."""

import threading

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
