"""A language's screened survivors written straight into a warehouse, as dbt's screening leaves them for
near-dedup (``document_signals`` with signatures, ``screened_documents`` with exact copies, the change log
``screening_changes``), so that near-dedup's own steps (``near_dedup_language``: export, cluster, write) run on
chosen documents without the language-ID and quality filters deciding which of them reach it: for the
near-dedup refresh tests, the labelled accuracy test and bench/bench_dedup_accuracy.py. The real dbt models
are exercised by the asset tests."""

from __future__ import annotations

import hashlib
import random
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from xinst_assets.assets.filtering import near_dedup_language
from xinst_assets.store.signals import SIGNALS_DDL
from xinst_assets.core.dedup import MinhashSigner, signature_to_bytes
from xinst_assets.core.dedup_eval import LabelledDocument, NearDuplicateScore, score_near_duplicates
from xinst_assets.core.filtering import FilterSettings
from xinst_assets.core.text import content_id
from xinst_assets.languages import Language
from xinst_assets.resources.warehouse import Warehouse

_SCREENED_DDL = """
CREATE TABLE IF NOT EXISTS screened_documents (
    lang VARCHAR, doc_id VARCHAR, text VARCHAR, url VARCHAR, timestamp VARCHAR, source VARCHAR, shard VARCHAR,
    position BIGINT, lid_label VARCHAR, lid_score DOUBLE, lid_runner_up VARCHAR, lid_runner_up_score DOUBLE,
    first_seen_at TIMESTAMP, exact_copies BIGINT, reject_reason VARCHAR, shard_ingested_at TIMESTAMP,
    settings_key VARCHAR, signals_version BIGINT, source_id VARCHAR, source_lang VARCHAR,
    lid_second_label VARCHAR, lid_second_score DOUBLE, lid_decided_by VARCHAR, lid_english_share DOUBLE);
CREATE TABLE IF NOT EXISTS screening_changes (lang VARCHAR NOT NULL, doc_id VARCHAR, build_seq BIGINT NOT NULL);
"""


class ScreenedLanguage:
    """One language's survivors in ``warehouse``; each :meth:`put` or :meth:`remove` is one screening build
    (logged as dbt logs it), and :meth:`near_dedup` runs near-dedup's steps on what is there."""

    def __init__(self, warehouse: Warehouse, lang: Language, settings: FilterSettings | None = None) -> None:
        self.warehouse, self.lang = warehouse, lang
        self.settings = settings or FilterSettings.for_language(lang)
        self.signer = MinhashSigner(self.settings.minhash)
        self._builds = 0
        with warehouse.write() as con:
            con.execute(SIGNALS_DDL + _SCREENED_DDL)

    def _build(self, con, doc_ids) -> None:
        self._builds += 1
        if self._builds == 1:  # the language's first build: the whole language
            con.execute("INSERT INTO screening_changes VALUES (?, NULL, ?)", [self.lang.code, self._builds])
        con.executemany("INSERT INTO screening_changes VALUES (?, ?, ?)",
                        [[self.lang.code, d, self._builds] for d in sorted(set(doc_ids))])

    def put(self, texts: list[str]) -> list[str]:
        """New documents (a text already there is an exact copy of it); returns their doc ids. A row's place
        (url, position) depends on its raw text and how many times that text came before, not on when it
        arrived, and of exact copies (one content id) the row at the first place survives, as dbt keeps the
        first copy in shard order."""
        ids = [content_id(t) for t in texts]
        now = datetime(2024, 1, 1)
        with self.warehouse.write() as con:
            known = {r[0] for r in con.execute(
                "SELECT DISTINCT doc_id FROM screened_documents WHERE lang = ? AND doc_id IN "
                "(SELECT unnest(?::VARCHAR[]))", [self.lang.code, ids]).fetchall()}
            fresh = {}
            for doc_id, text in zip(ids, texts):
                if doc_id not in known:
                    fresh.setdefault(doc_id, text)
                digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
                (repeat,) = con.execute("SELECT count(*) FROM screened_documents WHERE lang = ? AND url LIKE ?",
                                        [self.lang.code, f"https://example.test/{digest}/%"]).fetchone()
                con.execute(
                    "INSERT INTO screened_documents VALUES (?, ?, ?, ?, NULL, 'test', 'shard', ?, ?, 1.0, NULL, NULL, "
                    "?, 1, NULL, ?, 'test', 1, NULL, NULL, NULL, NULL, 'fasttext', NULL)",
                    [self.lang.code, doc_id, text, f"https://example.test/{digest}/{repeat}",
                     int(digest, 16) * 1000 + repeat, self.lang.code, now, now])
            signatures, _ = self.signer.signatures(list(fresh.values()), self.lang.script)
            rows = [[self.lang.code, d, self.lang.code, len(t), len(t.split()), now, signature_to_bytes(s)]
                    for (d, t), s in zip(fresh.items(), signatures)]
            if rows:
                con.executemany(
                    "INSERT INTO document_signals (lang, doc_id, settings_key, lid_label, lid_score, chars, words, "
                    "first_seen_at, minhash, signals_version) VALUES (?, ?, 'test', ?, 1.0, ?, ?, ?, ?, 1)", rows)
            self._recount(con, ids)
            self._build(con, ids)
        return ids

    def remove(self, doc_ids: list[str]) -> None:
        """Documents gone (every copy)."""
        with self.warehouse.write() as con:
            for table in ("screened_documents", "document_signals"):
                con.execute(f"DELETE FROM {table} WHERE lang = ? AND doc_id IN (SELECT unnest(?::VARCHAR[]))",
                            [self.lang.code, doc_ids])
            self._build(con, doc_ids)

    def _recount(self, con, doc_ids) -> None:
        con.execute("""
            UPDATE screened_documents s SET exact_copies = c.n,
                   reject_reason = CASE WHEN s.position = c.first THEN NULL ELSE 'dedup_exact_duplicate' END
            FROM (SELECT doc_id, count(*) AS n, min(position) AS first FROM screened_documents WHERE lang = ?
                  GROUP BY doc_id) c
            WHERE s.lang = ? AND s.doc_id = c.doc_id AND s.doc_id IN (SELECT unnest(?::VARCHAR[]))""",
                    [self.lang.code, self.lang.code, doc_ids])

    def near_dedup(self, scratch: Path | None = None) -> dict:
        """Near-dedup's steps on the language as it stands (the asset's summary, with ``staged``)."""
        if scratch is not None:
            return near_dedup_language(self.lang, self.settings, self.warehouse, scratch)
        with tempfile.TemporaryDirectory(prefix="near-dedup-") as folder:
            return near_dedup_language(self.lang, self.settings, self.warehouse, Path(folder))

    def clusters(self) -> dict[str, frozenset[str]]:
        """Each kept document's cluster (doc ids, itself included), as near_dedup_state holds them."""
        with self.warehouse.read() as con:
            rows = con.execute("SELECT doc_id, keep, duplicate_of FROM near_dedup_state WHERE lang = ?",
                               [self.lang.code]).fetchall()
        out: dict[str, set[str]] = {}
        for doc_id, keep, duplicate_of in rows:
            out.setdefault(doc_id if keep else duplicate_of, set()).add(doc_id)
        return {rep: frozenset(members) for rep, members in out.items()}

    def tables(self) -> dict[str, list[tuple]]:
        """The language's near-dedup tables (what a full run and a refresh must agree on)."""
        with self.warehouse.read() as con:
            return {table: con.execute(f"SELECT * EXCLUDE (lang{extra}) FROM {table} WHERE lang = ? ORDER BY ALL",
                                       [self.lang.code]).fetchall()
                    for table, extra in (("near_dedup_state", ""), ("filtered_documents", ", text"),
                                         ("filter_rejections", ", text"))}


@dataclass
class AccuracyRun:
    """One language's labelled set through near-dedup: the full run's score, and whether every shuffled
    arrival order (split over several refreshes) ended in exactly the full run's near-dedup tables."""

    score: NearDuplicateScore
    orders: int
    identical_orders: int
    exact_checks: int


def labelled_accuracy(docs: list[LabelledDocument], lang: Language, folder: Path, orders: int = 3,
                      batches: int = 3, seed: int = 0) -> AccuracyRun:
    """Near-dedup over one language's labelled documents in ``folder``: a full run, then ``orders`` random
    arrival orders, each split at random into ``batches`` refreshes."""
    warehouse = Warehouse(path=str(folder / "full.duckdb"))
    with warehouse.session():  # (one connection for the whole run)
        full = ScreenedLanguage(warehouse, lang)
        ids = full.put([d.text for d in docs])
        summary = full.near_dedup(folder)
        expected = full.tables()
        clusters = full.clusters()
    rep_of = {member: rep for rep, members in clusters.items() for member in members}
    score = score_near_duplicates(docs, {d.id: rep_of[doc_id] for d, doc_id in zip(docs, ids)})
    rng = random.Random(seed)
    identical = 0
    for k in range(orders):
        order = list(docs)
        rng.shuffle(order)
        cuts = sorted(rng.sample(range(1, len(order)), min(batches, len(order)) - 1))
        warehouse = Warehouse(path=str(folder / f"order-{k}.duckdb"))
        with warehouse.session():
            night = ScreenedLanguage(warehouse, lang)
            for start, end in zip([0, *cuts], [*cuts, len(order)]):
                night.put([d.text for d in order[start:end]])
                night.near_dedup(folder)
            identical += night.tables() == expected
    return AccuracyRun(score, orders, identical, summary["index"].exact_checks)
