"""The curated inputs' tables: one per kind (``seed_pairs``, ``parallel_pairs``, ``eval_questions``,
``replay_instructions``: lang, id, the kind's fields, source) and ``curated_rejections`` (the rows of every
kind rejected with a reason), each language's rows replaced together when its files change."""

from __future__ import annotations

import duckdb

from xinst_assets.core.curated import CuratedKind
from xinst_assets.resources.warehouse import has_table
from xinst_assets.store.resource import backend_of

REJECTIONS_DDL = """
CREATE TABLE IF NOT EXISTS curated_rejections (
    kind VARCHAR NOT NULL, lang VARCHAR NOT NULL, file VARCHAR, line BIGINT, reason VARCHAR NOT NULL, detail VARCHAR
);
"""


def curated_ddl(kind: CuratedKind, primary_keys: bool = True) -> str:
    """The DDL of ``kind``'s table; ``primary_keys=False`` for a backend without constraints (ids are unique
    per language by construction: duplicates are rejected when the files are read)."""
    columns = [f"{f} VARCHAR NOT NULL" for f in kind.required] + [f"{f} VARCHAR" for f in kind.optional]
    key = ", PRIMARY KEY (lang, id)" if primary_keys else ""
    return (f"CREATE TABLE IF NOT EXISTS {kind.name} (lang VARCHAR NOT NULL, id VARCHAR NOT NULL, "
            f"{', '.join(columns)}, source VARCHAR{key})")


def stored_curated(store, kind: CuratedKind, lang: str, fields: list[str]) -> tuple[list[tuple], list[tuple]] | None:
    """The rows (``fields``) and rejections (file, line, reason, detail) stored for ``lang`` of ``kind``, each
    sorted (None: the tables do not exist yet)."""
    with backend_of(store).read() as con:
        if not (has_table(con, kind.name) and has_table(con, "curated_rejections")):
            return None
        rows = con.execute(f"SELECT {', '.join(fields)} FROM {kind.name} WHERE lang = ?", [lang]).fetchall()
        rejected = con.execute("SELECT file, line, reason, detail FROM curated_rejections WHERE kind = ? AND lang = ?",
                               [kind.name, lang]).fetchall()
    return sorted(rows), sorted(rejected, key=repr)


def replace_curated(store, kind: CuratedKind, lang: str, fields: list[str], rows: list[tuple],
                    rejected: list[tuple]) -> None:
    """Make ``lang``'s rows (values of ``fields``) and rejections (file, line, reason, detail) of ``kind``
    these, in one transaction."""
    backend = backend_of(store)

    def work(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(curated_ddl(kind, backend.primary_keys))
        con.execute(REJECTIONS_DDL)
        con.execute(f"DELETE FROM {kind.name} WHERE lang = ?", [lang])
        con.execute("DELETE FROM curated_rejections WHERE kind = ? AND lang = ?", [kind.name, lang])
        if rows:
            con.executemany(
                f"INSERT INTO {kind.name} (lang, {', '.join(fields)}) VALUES ({', '.join(['?'] * (len(fields) + 1))})",
                [[lang, *row] for row in rows])
        if rejected:
            con.executemany("INSERT INTO curated_rejections VALUES (?, ?, ?, ?, ?, ?)",
                            [[kind.name, lang, *row] for row in rejected])

    backend.partition_transaction(kind.name, lang, work)


def seed_rows(store) -> list[tuple[str, str, str]]:
    """Every language's stored seed pairs (lang, instruction, response), by language and id."""
    with backend_of(store).read() as con:
        return con.execute("SELECT lang, instruction, response FROM seed_pairs ORDER BY lang, id").fetchall()
