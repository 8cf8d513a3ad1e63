"""Warehouse sessions: one connection for a batch of windows, each write its own transaction, the lock held."""

import threading
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest

from xinst_assets.resources.warehouse import Warehouse, WarehouseLockTimeout, file_lock, sessions_as_done


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


def test_results_are_stored_in_order_in_sessions_left_while_the_next_one_is_computed(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    release_second = threading.Event()
    lock_free_while_waiting: list[bool] = []

    def second() -> str:
        release_second.wait(5)
        return "fi"

    def watch() -> None:  # while the second result is still being computed
        lock_free_while_waiting.append(_lock_is_free(warehouse, within_s=2.0))
        release_second.set()

    with ThreadPoolExecutor(max_workers=2) as pool:
        first_done = pool.submit(lambda: "sw")
        first_done.result()
        items = [(1, first_done), (2, pool.submit(second)), (3, pool.submit(lambda: "bn"))]
        stored = []
        for key, result in sessions_as_done(warehouse, items):
            assert warehouse._session_connection() is not None  # each result is stored inside a session
            stored.append((key, result))
            if key == 1:
                threading.Thread(target=watch).start()
    assert stored == [(1, "sw"), (2, "fi"), (3, "bn")]
    assert lock_free_while_waiting == [True]  # the lock was left while the second result was computed
    assert _lock_is_free(warehouse)


def test_a_failed_result_is_raised_after_the_earlier_ones_are_stored(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))

    def fail() -> None:
        raise ValueError("this language's index failed")

    with ThreadPoolExecutor(max_workers=1) as pool:
        items = [("sw", pool.submit(lambda: 1)), ("fi", pool.submit(fail)), ("bn", pool.submit(lambda: 3))]
        stored = []
        with pytest.raises(ValueError, match="index failed"):
            for key, result in sessions_as_done(warehouse, items):
                stored.append(key)
    assert stored == ["sw"]
    assert _lock_is_free(warehouse)
