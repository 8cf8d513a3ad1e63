"""Stage 4's tables: ``scored_pairs`` (each candidate's final label, expected score and status after the
curation rounds) and ``scored_pairs_rounds`` (every round's label of every pair, and the generator that wrote
it), replaced per language; and the candidates that curation reads."""

from __future__ import annotations

from pathlib import Path

import duckdb

from xinst_assets.resources.warehouse import sql_path
from xinst_assets.store.resource import backend_of

SCORED_DDL = """
CREATE TABLE IF NOT EXISTS scored_pairs (
    lang VARCHAR NOT NULL, pair_id VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, instruction VARCHAR NOT NULL,
    response VARCHAR NOT NULL, source_url VARCHAR, refined BOOLEAN NOT NULL, p1 DOUBLE, p2 DOUBLE, p3 DOUBLE,
    expected_score DOUBLE NOT NULL, label INTEGER NOT NULL, round INTEGER NOT NULL, status VARCHAR NOT NULL{key}
);
CREATE TABLE IF NOT EXISTS scored_pairs_rounds (
    lang VARCHAR NOT NULL, round INTEGER NOT NULL, pair_id VARCHAR NOT NULL, doc_id VARCHAR NOT NULL,
    instruction VARCHAR, label INTEGER, expected_score DOUBLE, refined BOOLEAN, generator VARCHAR, status VARCHAR
);
"""


def scored_ddl(primary_keys: bool = True) -> str:
    """The DDL of stage 4's tables; ``primary_keys=False`` for a backend without constraints (a language's
    pairs are replaced whole)."""
    return SCORED_DDL.format(key=",\n    PRIMARY KEY (lang, pair_id)" if primary_keys else "")


def candidates_to_curate(store, lang: str) -> list[tuple]:
    """``lang``'s candidate pairs (pair_id, doc_id, instruction, response, source_url), by pair id."""
    with backend_of(store).read() as con:
        return con.execute("SELECT pair_id, doc_id, instruction, response, source_url FROM candidate_pairs "
                           "WHERE lang = ? ORDER BY pair_id", [lang]).fetchall()


def replace_scored(store, lang: str, scored_file: Path | None, rounds_file: Path | None) -> None:
    """Replace ``lang``'s scored pairs with the staged ``scored_file`` and its round history with
    ``rounds_file`` (None: no rows), in one transaction."""
    backend = backend_of(store)

    def work(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(scored_ddl(backend.primary_keys))
        con.execute("DELETE FROM scored_pairs WHERE lang = ?", [lang])
        con.execute("DELETE FROM scored_pairs_rounds WHERE lang = ?", [lang])
        if scored_file is not None:
            con.execute(f"INSERT INTO scored_pairs BY NAME SELECT ? AS lang, * FROM read_parquet('{sql_path(scored_file)}')",
                        [lang])
        if rounds_file is not None:
            con.execute(f"INSERT INTO scored_pairs_rounds BY NAME SELECT ? AS lang, *, 'scored' AS status "
                        f"FROM read_parquet('{sql_path(rounds_file)}')", [lang])

    backend.partition_transaction("scored_pairs", lang, work)
