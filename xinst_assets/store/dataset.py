"""Stage 5's tables: ``diversified_dataset`` (the selected pairs of each language, with their cluster and
rank), read from stage 4's ``scored_pairs``, and what ``dataset_export`` reads of them.

``diversified_dataset`` reads a language's accepted pairs (:func:`accepted_pairs`), selects outside any
transaction, and replaces the language's rows in one partition transaction (:func:`replace_diversified`).
"""

from __future__ import annotations

import duckdb
import polars as pl

from xinst_assets.resources.warehouse import has_table
from xinst_assets.store.resource import backend_of

DIVERSIFIED_DDL = """
CREATE TABLE IF NOT EXISTS diversified_dataset (
    lang VARCHAR NOT NULL, pair_id VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, instruction VARCHAR NOT NULL,
    response VARCHAR NOT NULL, source_url VARCHAR, refined BOOLEAN NOT NULL, score DOUBLE NOT NULL,
    label INTEGER NOT NULL, cluster INTEGER NOT NULL, rank INTEGER NOT NULL{key}
);
"""


def diversified_ddl(primary_keys: bool = True) -> str:
    """The DDL of ``diversified_dataset``; ``primary_keys=False`` for a backend without constraints (a
    language's rows are replaced whole, and the unique_ids check watches the pair ids)."""
    return DIVERSIFIED_DDL.format(key=", PRIMARY KEY (lang, pair_id)" if primary_keys else "")


def accepted_pairs(store, lang: str, accept_label: int) -> tuple[pl.DataFrame, dict[int, int]]:
    """``lang``'s scored pairs labelled at least ``accept_label`` (pair_id, doc_id, instruction, response,
    source_url, refined, score, label; by pair id), and the count of every scored pair per label."""
    with backend_of(store).read() as con:
        pool = con.execute(
            "SELECT pair_id, doc_id, instruction, response, source_url, refined, expected_score AS score, "
            "label FROM scored_pairs WHERE lang = ? AND label >= ? ORDER BY pair_id", [lang, accept_label]).pl()
        labels = dict(con.execute(
            "SELECT label, count(*) FROM scored_pairs WHERE lang = ? GROUP BY label", [lang]).fetchall())
    return pool, labels


def replace_diversified(store, lang: str, selected: pl.DataFrame) -> int:
    """Replace ``lang``'s rows of ``diversified_dataset`` with ``selected`` (its columns, by name) in one
    transaction; returns the rows written."""
    backend = backend_of(store)
    table = selected.to_arrow()

    def work(con: duckdb.DuckDBPyConnection) -> int:
        con.execute(diversified_ddl(backend.primary_keys))
        con.execute("DELETE FROM diversified_dataset WHERE lang = ?", [lang])
        if table.num_rows:
            con.register("_new_diversified", table)
            try:
                con.execute("INSERT INTO diversified_dataset BY NAME SELECT * FROM _new_diversified")
            finally:
                con.unregister("_new_diversified")
        return table.num_rows

    return backend.partition_transaction("diversified_dataset", lang, work)


def dataset_rows(store) -> tuple[pl.DataFrame, dict[str, str]]:
    """Every language's diversified pairs as the export writes them (lang, pair_id, instruction, response,
    refined, score, label, cluster, source_url, source_doc_id), by language and rank, and the path recorded
    for each checkpoint name (the export's provenance; none before any was recorded)."""
    with backend_of(store).read() as con:
        rows = con.execute("SELECT lang, pair_id, instruction, response, refined, score, label, cluster, "
                           "source_url, doc_id AS source_doc_id FROM diversified_dataset ORDER BY lang, rank").pl()
        checkpoints = dict(con.execute("SELECT name, path FROM checkpoints").fetchall()) \
            if has_table(con, "checkpoints") else {}
    return rows, checkpoints
