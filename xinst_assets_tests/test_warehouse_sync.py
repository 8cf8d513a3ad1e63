"""sync_partition: the same table as replacing the partition, with only the difference written; and the
migration of per-document tables off their primary key."""

import duckdb
import pytest

from xinst_assets.resources.warehouse import drop_primary_key, replace_partition, sync_partition

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


@pytest.mark.parametrize("key", [None, ["id"], ["lang", "id"]])
def test_sync_writes_only_the_difference_and_matches_a_replace(con, key):
    assert sync_partition(con, "t", "sw", SOURCE, key=key) == (2, 2)  # old id 2 and id 3 out; new 2 and 4 in
    synced = _table(con)
    con.execute("DELETE FROM t")
    con.execute(ROWS)
    replace_partition(con, "t", "sw", SOURCE)
    assert synced == _table(con)
    assert ("fi", 1, "z", 9.0) in synced  # other partitions untouched


@pytest.mark.parametrize("key", [None, ["id"]])
def test_sync_twice_changes_nothing_the_second_time(con, key):
    sync_partition(con, "t", "sw", SOURCE, key=key)
    before = _table(con)
    assert sync_partition(con, "t", "sw", SOURCE, key=key) == (0, 0)
    assert _table(con) == before


def test_sync_takes_columns_by_name_and_an_empty_source_empties_the_partition(con):
    reordered = "SELECT x, v, id, lang FROM (" + SOURCE + ")"
    sync_partition(con, "t", "sw", reordered)
    assert [r[1] for r in _table(con) if r[0] == "sw"] == [1, 2, 4]
    assert sync_partition(con, "t", "sw", "SELECT * FROM t WHERE false") == (3, 0)
    assert [r[0] for r in _table(con)] == ["fi"]


def test_a_key_that_is_not_unique_still_gives_the_replaced_table(con):
    """Rows sharing a key (here v 'a' twice, one of them changed) are rewritten as a group; NULL keys match."""
    con.execute("INSERT INTO t VALUES ('sw', 5, NULL, 1.0), ('sw', 6, 'a', 7.0)")
    source = ("SELECT * FROM (VALUES ('sw', 1, 'a', NULL::DOUBLE), ('sw', 6, 'a', 8.0), ('sw', 2, 'b', 1.0), "
              "('sw', 5, NULL, 1.0)) v(lang, id, v, x)")
    sync_partition(con, "t", "sw", source, key=["v"])
    synced = _table(con)
    con.execute("DELETE FROM t WHERE lang = 'sw'")
    con.execute(f"INSERT INTO t {source}")
    assert synced == _table(con)
    assert sync_partition(con, "t", "sw", source, key=["v"]) == (2, 2)  # the 'a' group pairs differ: rewritten


def test_a_table_loses_its_primary_key_and_keeps_its_rows_types_and_not_null(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE TABLE s (lang VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, score DOUBLE, sig BLOB, "
                    "PRIMARY KEY (lang, doc_id))")
        con.execute("INSERT INTO s VALUES ('sw', 'a', 0.5, '\\x01'::BLOB), ('sw', 'b', NULL, NULL)")
        before = con.execute("SELECT * FROM s ORDER BY ALL").fetchall()
        assert drop_primary_key(con, "s") is True
        assert drop_primary_key(con, "s") is False  # already migrated: nothing to do
        assert con.execute("SELECT * FROM s ORDER BY ALL").fetchall() == before
        assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 's' "
                           "AND constraint_type = 'PRIMARY KEY'").fetchone()[0] == 0
        columns = con.execute("SELECT column_name, data_type, is_nullable FROM duckdb_columns() "
                              "WHERE table_name = 's' ORDER BY column_index").fetchall()
        assert columns == [("lang", "VARCHAR", False), ("doc_id", "VARCHAR", False), ("score", "DOUBLE", True),
                           ("sig", "BLOB", True)]
        with pytest.raises(duckdb.ConstraintException):
            con.execute("INSERT INTO s VALUES (NULL, 'c', 1.0, NULL)")


def test_columns_read_by_row_id_are_written_for_changed_rows_and_not_compared(con):
    """by_row_id: the texts come from the source table's rows, by rowid, for the rows written; an unchanged
    row keeps its stored text (the other columns say it is the same row)."""
    con.execute("CREATE TABLE docs (lang VARCHAR, doc_id VARCHAR, version INTEGER, text VARCHAR)")
    con.execute("INSERT INTO docs VALUES ('sw', 'a', 1, 'alpha'), ('sw', 'b', 1, 'beta'), ('fi', 'a', 1, 'alfa')")
    con.execute("CREATE TABLE kept (lang VARCHAR, doc_id VARCHAR, version INTEGER, text VARCHAR, chars BIGINT)")
    source = "SELECT lang, doc_id, version, rowid AS _row_id FROM docs WHERE lang = ?"

    def sync():
        return sync_partition(con, "kept", "sw", source, ["sw"], key=["doc_id"], by_row_id=("docs", {"text": "text", "chars": "length(text)"}))

    assert sync() == (0, 2)
    assert con.execute("SELECT * FROM kept ORDER BY ALL").fetchall() == [("sw", "a", 1, "alpha", 5), ("sw", "b", 1, "beta", 4)]
    con.execute("UPDATE kept SET text = 'stored' WHERE doc_id = 'a'")  # not compared: stays
    con.execute("UPDATE docs SET version = 2, text = 'beta two' WHERE doc_id = 'b'")
    con.execute("INSERT INTO docs VALUES ('sw', 'c', 1, 'gamma')")
    assert sync() == (1, 2)
    assert con.execute("SELECT * FROM kept ORDER BY ALL").fetchall() == [
        ("sw", "a", 1, "stored", 5), ("sw", "b", 2, "beta two", 8), ("sw", "c", 1, "gamma", 5)]
    assert sync() == (0, 0)


def test_row_ids_are_grouped_into_dense_ranges_and_at_most_a_bounded_number():
    from xinst_assets.resources.warehouse import row_id_ranges

    assert row_id_ranges([]) == []
    assert row_id_ranges([5, 6, 9, 100, 101, 5000], gap=10) == [(5, 9), (100, 101), (5000, 5000)]
    ranges = row_id_ranges(list(range(0, 1000, 10)), gap=5, most=8)  # 100 lone ids: the gap grows until 8 fit
    assert len(ranges) <= 8 and ranges[0][0] == 0 and ranges[-1][1] == 990
    assert all(a <= b < c for (a, b), (c, _) in zip(ranges, ranges[1:]))


def test_rows_by_id_reads_scattered_rows_exactly_once_each(monkeypatch):
    """Row ids far apart (an old row among new ones) are read by separate range-bounded scans; the rows come
    back exactly as a plain rowid semi-join returns them, also when the ranges must be merged."""
    import xinst_assets.resources.warehouse as warehouse

    con = duckdb.connect()
    con.execute("CREATE TABLE big AS SELECT i, 'text ' || i AS text FROM range(300000) r(i)")
    con.execute("CREATE TEMP TABLE wanted AS SELECT unnest([7, 8, 150000, 299990, 299999, 8]) AS r")
    expected = con.execute("SELECT rowid, upper(text) FROM big WHERE rowid IN (SELECT r FROM wanted) ORDER BY 1").fetchall()
    for most in (64, 1):
        monkeypatch.setattr(warehouse, "ROW_ID_RANGES", most)
        query = warehouse.rows_by_id(con, "big", "upper(text) AS t", "wanted", "r")
        assert query.count("UNION ALL") == (2 if most == 64 else 0)
        assert con.execute(f"SELECT * FROM ({query}) ORDER BY 1").fetchall() == expected
    con.execute("DELETE FROM wanted")
    assert con.execute(f"SELECT * FROM ({warehouse.rows_by_id(con, 'big', 'text', 'wanted', 'r')})").fetchall() == []


def test_a_scoped_sync_compares_and_writes_only_the_rows_in_scope(con):
    """scope=(column, subquery): rows outside it stay as they are on both sides (id 3 is not deleted although
    the source lacks it; id 4 is not inserted although the source has it); rows inside are synced."""
    con.execute("CREATE TEMP TABLE wanted AS SELECT 2 AS id UNION ALL SELECT 5")
    assert sync_partition(con, "t", "sw", SOURCE, key=["id"], scope=("id", "SELECT id FROM wanted")) == (1, 1)
    assert _table(con) == [("fi", 1, "z", 9.0), ("sw", 1, "a", None), ("sw", 2, "b", 1.5), ("sw", 3, "c", 2.0)]
    assert sync_partition(con, "t", "sw", SOURCE, key=["id"], scope=("id", "SELECT id FROM wanted")) == (0, 0)
