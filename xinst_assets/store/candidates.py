"""Stage 3's tables: ``candidate_pairs`` (an English instruction the generator wrote for a filtered text, with
the text as its response) and ``candidate_rejections`` (the generations dropped, with the reason), replaced per
language; and the filtered texts the generator reads."""

from __future__ import annotations

from pathlib import Path

import duckdb

from xinst_assets.resources.warehouse import sql_path
from xinst_assets.store.resource import backend_of

CANDIDATES_DDL = """
CREATE TABLE IF NOT EXISTS candidate_pairs (
    lang VARCHAR NOT NULL, pair_id VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, instruction VARCHAR NOT NULL,
    response VARCHAR NOT NULL, source_url VARCHAR, generator VARCHAR NOT NULL{key}
);
CREATE TABLE IF NOT EXISTS candidate_rejections (
    lang VARCHAR NOT NULL, doc_id VARCHAR NOT NULL, instruction VARCHAR, reason VARCHAR NOT NULL
);
"""


def candidates_ddl(primary_keys: bool = True) -> str:
    """The DDL of stage 3's tables; ``primary_keys=False`` for a backend without constraints (a language's
    candidates are replaced whole; pair ids are hashes of language, document and instruction)."""
    return CANDIDATES_DDL.format(key=", PRIMARY KEY (lang, pair_id)" if primary_keys else "")


def filtered_texts(store, lang: str) -> list[tuple[str, str, str | None]]:
    """``lang``'s kept documents (doc_id, text, url), by doc id."""
    with backend_of(store).read() as con:
        return con.execute("SELECT doc_id, text, url FROM filtered_documents WHERE lang = ? ORDER BY doc_id",
                           [lang]).fetchall()


def replace_candidates(store, lang: str, generator: str, kept_file: Path, rejected_file: Path) -> None:
    """Replace ``lang``'s candidates with the staged ``kept_file`` (pair_id, doc_id, instruction, response,
    source_url; written by ``generator``) and its rejections with ``rejected_file`` (doc_id, instruction,
    reason), in one transaction."""
    backend = backend_of(store)

    def work(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(candidates_ddl(backend.primary_keys))
        con.execute("DELETE FROM candidate_pairs WHERE lang = ?", [lang])
        con.execute("DELETE FROM candidate_rejections WHERE lang = ?", [lang])
        con.execute(f"INSERT INTO candidate_pairs SELECT ?, pair_id, doc_id, instruction, response, "
                    f"source_url, ? FROM read_parquet('{sql_path(kept_file)}')", [lang, generator])
        con.execute(f"INSERT INTO candidate_rejections SELECT ?, doc_id, instruction, reason "
                    f"FROM read_parquet('{sql_path(rejected_file)}')", [lang])

    backend.partition_transaction("candidate_pairs", lang, work)
