"""sync_partition: the same table as replacing the partition, with only the difference written."""

import duckdb
import pytest

from xinst_assets.resources.warehouse import replace_partition, sync_partition

DDL = "CREATE TABLE t (lang VARCHAR, id INTEGER, v VARCHAR, x DOUBLE)"
ROWS = "INSERT INTO t VALUES ('sw', 1, 'a', NULL), ('sw', 2, 'b', 1.0), ('sw', 3, 'c', 2.0), ('fi', 1, 'z', 9.0)"
# id 1 unchanged (NULL compared as equal), id 2 changed in one column, id 3 gone, id 4 new
SOURCE = "SELECT * FROM (VALUES ('sw', 1, 'a', NULL::DOUBLE), ('sw', 2, 'b', 1.5), ('sw', 4, 'd', 3.0)) v(lang, id, v, x)"


def _table(con):
    return con.execute("SELECT * FROM t ORDER BY lang, id").fetchall()


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute(DDL)
    con.execute(ROWS)
    yield con
    con.close()


def test_sync_writes_only_the_difference_and_matches_a_replace(con):
    assert sync_partition(con, "t", "sw", SOURCE) == (2, 2)  # old id 2 and id 3 out; new id 2 and id 4 in
    synced = _table(con)
    con.execute("DELETE FROM t")
    con.execute(ROWS)
    replace_partition(con, "t", "sw", SOURCE)
    assert synced == _table(con)
    assert ("fi", 1, "z", 9.0) in synced  # other partitions untouched


def test_sync_twice_changes_nothing_the_second_time(con):
    sync_partition(con, "t", "sw", SOURCE)
    before = _table(con)
    assert sync_partition(con, "t", "sw", SOURCE) == (0, 0)
    assert _table(con) == before


def test_sync_takes_columns_by_name_and_an_empty_source_empties_the_partition(con):
    reordered = "SELECT x, v, id, lang FROM (" + SOURCE + ")"
    sync_partition(con, "t", "sw", reordered)
    assert [r[1] for r in _table(con) if r[0] == "sw"] == [1, 2, 4]
    assert sync_partition(con, "t", "sw", "SELECT * FROM t WHERE false") == (3, 0)
    assert [r[0] for r in _table(con)] == ["fi"]
