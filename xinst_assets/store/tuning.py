"""Stages 6 and 7's tables: what ``tuned_checkpoint`` reads to train (the diversified pairs, the parallel pairs,
the replay instructions), what ``evaluation`` reads (its questions and the held-out seed pairs), and the
evaluation's own tables: ``evaluation_results`` (per language and model), ``evaluation_answers`` (every answer
and its verdict) and ``evaluation_benchmarks`` (multiple-choice accuracy), replaced whole by each evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from xinst_assets.resources.warehouse import has_table
from xinst_assets.store.resource import backend_of

EVALUATION_DDL = """
CREATE TABLE IF NOT EXISTS evaluation_results (
    lang VARCHAR NOT NULL, model VARCHAR NOT NULL, questions INTEGER, language_fidelity DOUBLE,
    wins INTEGER, ties INTEGER, losses INTEGER, unjudged INTEGER, heldout_loss DOUBLE{results_key}
);
CREATE TABLE IF NOT EXISTS evaluation_answers (
    lang VARCHAR NOT NULL, question_id VARCHAR NOT NULL, model VARCHAR NOT NULL, answer VARCHAR, verdict VARCHAR
);
CREATE TABLE IF NOT EXISTS evaluation_benchmarks (
    benchmark VARCHAR NOT NULL, lang VARCHAR NOT NULL, model VARCHAR NOT NULL, examples INTEGER NOT NULL,
    accuracy DOUBLE NOT NULL, predicted VARCHAR NOT NULL{benchmarks_key}
);
"""


def evaluation_ddl(primary_keys: bool = True) -> str:
    """The DDL of the evaluation's tables; ``primary_keys=False`` for a backend without constraints (the
    tables are replaced whole by one evaluation at a time)."""
    if not primary_keys:
        return EVALUATION_DDL.format(results_key="", benchmarks_key="")
    return EVALUATION_DDL.format(results_key=", PRIMARY KEY (lang, model)",
                                 benchmarks_key=", PRIMARY KEY (benchmark, lang, model)")


@dataclass
class TrainingRows:
    """What a tuning run trains on: ``pairs`` (lang, instruction, response, refined) of the diversified sets,
    ``parallel`` (lang, en, text) pairs and the stored ``replay`` (instruction, response) rows."""

    pairs: list[tuple] = field(default_factory=list)
    parallel: list[tuple] = field(default_factory=list)
    replay: list[tuple] = field(default_factory=list)


def training_rows(store, langs: list[str], parallel: bool, replay_lang: str | None) -> TrainingRows:
    """The diversified pairs of ``langs`` (by language and rank); with ``parallel``, their parallel pairs (by
    language and id); with ``replay_lang``, the replay instructions stored under it (by id; none before
    replay_instructions ran)."""
    with backend_of(store).read() as con:
        pairs = con.execute(
            "SELECT lang, instruction, response, refined FROM diversified_dataset WHERE list_contains(?, lang) "
            "ORDER BY lang, rank", [langs]).fetchall()
        pairs_parallel = con.execute(
            "SELECT lang, en, text FROM parallel_pairs WHERE list_contains(?, lang) ORDER BY lang, id",
            [langs]).fetchall() if parallel else []
        replay = con.execute(
            "SELECT instruction, response FROM replay_instructions WHERE lang = ? ORDER BY id", [replay_lang]
        ).fetchall() if replay_lang is not None and has_table(con, "replay_instructions") else []
    return TrainingRows(pairs, pairs_parallel, replay)


def evaluation_inputs(store) -> tuple[list[tuple], list[tuple]]:
    """The evaluation questions (lang, id, question) and the held-out seed pairs (lang, instruction,
    response), each by language and id."""
    with backend_of(store).read() as con:
        questions = con.execute("SELECT lang, id, question FROM eval_questions ORDER BY lang, id").fetchall()
        heldout = con.execute("SELECT lang, instruction, response FROM seed_pairs ORDER BY lang, id").fetchall()
    return questions, heldout


def replace_evaluation(store, results: list[tuple], answers: list[tuple], benchmarks: list[tuple]) -> None:
    """Replace the evaluation's tables with one evaluation's rows, in one transaction: ``results`` (lang,
    model, questions, language_fidelity, wins, ties, losses, unjudged, heldout_loss), ``answers`` (lang,
    question_id, model, answer, verdict) and ``benchmarks`` (benchmark, lang, model, examples, accuracy,
    predicted)."""
    backend = backend_of(store)

    def work(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(evaluation_ddl(backend.primary_keys))
        for table in ("evaluation_results", "evaluation_answers", "evaluation_benchmarks"):
            con.execute(f"DELETE FROM {table}")
        if benchmarks:
            con.executemany("INSERT INTO evaluation_benchmarks VALUES (?, ?, ?, ?, ?, ?)", benchmarks)
        if results:
            con.executemany("INSERT INTO evaluation_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", results)
            con.executemany("INSERT INTO evaluation_answers VALUES (?, ?, ?, ?, ?)", answers)

    backend.transaction(work)
