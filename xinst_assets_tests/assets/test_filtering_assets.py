"""Stage 2 through Dagster: raw -> document_signals -> dbt screening -> near-dedup -> dbt marts."""

import json
import shutil

import duckdb
import pytest

from xinst_assets.config import XinstConfig
from xinst_assets.languages import load_registry
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests.conftest import asset_metadata, materialize

FILTER_CHAIN = "raw_web_text document_signals screened_documents language_filtered_text filter_rejections language_filter_stats"


def _sample_config(home) -> XinstConfig:
    return XinstConfig(registry=load_registry(), home=home, raw_patterns=[str(SAMPLE_DIR / "raw")])


def _labels(lang: str) -> dict[str, str]:
    path = SAMPLE_DIR / "labels" / f"{lang}.jsonl"
    return {row["url"]: row["label"] for row in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def filtered_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("filtered")
    config = _sample_config(home)
    results = {lang: materialize(config, FILTER_CHAIN.split(), lang) for lang in ("sw", "id")}
    return config, results


def test_the_filter_chain_materializes_with_dbt_and_its_checks_pass(filtered_home):
    _, results = filtered_home
    for lang, result in results.items():
        assert result.success, lang
        checks = _checks(result)
        assert checks["no_duplicates_kept"] and checks["language_purity"] and checks["kept_fraction_in_bounds"]
        # dbt tests ran as asset checks too
        assert any(name.startswith("not_null") for name in checks), checks


@pytest.mark.parametrize("lang", ["sw", "id"])
def test_kept_set_matches_the_labels_with_high_recall_and_precision(filtered_home, lang):
    config, _ = filtered_home
    labels = _labels(lang)
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        kept_urls = [r[0] for r in con.execute("SELECT url FROM filtered_documents WHERE lang = ?", [lang]).fetchall()]
        stats = con.execute("SELECT documents_in, kept, rejected FROM language_filter_stats WHERE lang = ?",
                            [lang]).fetchone()
    clean = {u for u, label in labels.items() if label == "clean"}
    # A duplicate group counts as right when one member survives, whichever (dedup keeps the first seen).
    kept_labels = [labels[u] for u in kept_urls]
    recall = sum(1 for u in kept_urls if u in clean) / len(clean)
    precision = sum(1 for label in kept_labels if label in ("clean", "near_duplicate", "exact_duplicate")) / len(kept_urls)
    assert recall >= 0.9, recall
    assert precision >= 0.95, precision
    assert stats[0] == len(labels) and stats[1] + stats[2] == stats[0]  # nothing silently lost


def test_a_second_run_screens_nothing_again_and_keeps_the_same_documents(filtered_home):
    config, _ = filtered_home
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        before = con.execute("SELECT doc_id, cluster_size FROM filtered_documents WHERE lang='sw' ORDER BY 1").fetchall()
    result = materialize(config, FILTER_CHAIN.split(), "sw")
    signals = next(e for e in result.get_asset_materialization_events()
                   if e.asset_key.path == ["document_signals"]).materialization.metadata
    assert signals["documents_screened_this_run"].value == 0
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        after = con.execute("SELECT doc_id, cluster_size FROM filtered_documents WHERE lang='sw' ORDER BY 1").fetchall()
        rejections = con.execute("SELECT count(*), count(DISTINCT (doc_id, shard, position)) FROM filter_rejections "
                                 "WHERE lang='sw'").fetchone()
    assert before == after and any(size > 1 for _, size in after)
    assert rejections[0] == rejections[1]


def test_a_moved_source_folder_is_neither_read_nor_screened_again(tmp_path):
    """Shards are known by their place in the source: moving the folder (mtimes kept, as mv and cp -a keep them)
    and pointing the pattern at the new place leaves every stage with nothing to do and every row as it was."""
    source = tmp_path / "mount-a" / "raw"
    shutil.copytree(SAMPLE_DIR / "raw" / "sw", source / "sw")  # copy2: sizes and mtimes kept
    home = tmp_path / "home"
    config = XinstConfig(registry=load_registry(), home=home, raw_patterns=[str(source)])
    assert materialize(config, FILTER_CHAIN.split(), "sw").success
    tables = ("raw_shards", "raw_documents", "screened_documents", "filtered_documents", "filter_rejections")

    def contents() -> dict[str, list]:
        with duckdb.connect(str(config.warehouse), read_only=True) as con:
            return {t: con.execute(f"SELECT * FROM {t} WHERE lang = 'sw' ORDER BY ALL").fetchall() for t in tables}

    before = contents()
    assert {row[1] for row in before["raw_shards"]} == {"raw/sw/part-00000.jsonl"}
    moved = tmp_path / "mount-b" / "raw"
    moved.parent.mkdir()
    source.rename(moved)
    config = XinstConfig(registry=load_registry(), home=home, raw_patterns=[str(moved)])
    result = materialize(config, FILTER_CHAIN.split(), "sw")
    assert result.success
    raw = asset_metadata(result, "raw_web_text")
    assert (raw["shards_read"], raw["shards_unchanged"], raw["shards_removed"]) == (0, 1, 0)
    assert asset_metadata(result, "document_signals")["documents_screened_this_run"] == 0
    assert asset_metadata(result, "language_filtered_text")["near_dedup_decisions_written_this_run"] == 0
    assert contents() == before


def test_a_partition_builds_while_another_language_is_half_way_through_its_refresh(tmp_path):
    """dbt's tests are scoped to the partition being built: another language whose new shard is ingested but
    whose statistics are not rebuilt yet (a nightly refresh in flight) must not fail this one."""
    import shutil

    raw = tmp_path / "raw"
    for lang in ("sw", "id"):
        shutil.copytree(SAMPLE_DIR / "raw" / lang, raw / lang)
    config = XinstConfig(registry=load_registry(), home=tmp_path / "home", raw_patterns=[str(raw)])
    for lang in ("sw", "id"):
        assert materialize(config, FILTER_CHAIN.split(), lang).success, lang

    lines = (raw / "id" / "part-00000.jsonl").read_text(encoding="utf-8").splitlines()
    new = [{**json.loads(line), "url": f"https://new.example/{i}"} for i, line in enumerate(lines[:5])]
    new = [{**row, "text": row["text"] + f"\n\nDiperbarui {i}."} for i, row in enumerate(new)]
    (raw / "id" / "part-00001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new), encoding="utf-8")
    assert materialize(config, ["raw_web_text"], "id").success  # id: raw ingested, statistics stale

    result = materialize(config, FILTER_CHAIN.split(), "sw")
    assert result.success and all(_checks(result).values()), _checks(result)
    assert materialize(config, FILTER_CHAIN.split(), "id").success
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        stats = dict(con.execute("SELECT lang, documents_in FROM language_filter_stats").fetchall())
        raw_counts = dict(con.execute("SELECT lang, count(*) FROM raw_documents GROUP BY lang").fetchall())
    assert stats == raw_counts and raw_counts["id"] == len(lines) + 5


def _refresh_with_near_copies(tmp_path, name: str, older_rule: bool = False):
    """sw's sample, then a new shard of near and exact copies of kept documents: the final tables and the
    refresh's near-dedup metadata. ``older_rule``: the stored decisions were made under another clustering
    rule (a warehouse from an earlier version) before the refresh."""
    import shutil

    raw = tmp_path / name / "raw"
    shutil.copytree(SAMPLE_DIR / "raw" / "sw", raw / "sw")
    config = XinstConfig(registry=load_registry(), home=tmp_path / name / "home", raw_patterns=[str(raw)])
    assert materialize(config, FILTER_CHAIN.split(), "sw").success
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        kept = con.execute("SELECT url, text FROM filtered_documents WHERE lang = 'sw' ORDER BY doc_id").fetchall()
    new = []
    for i, (url, text) in enumerate(kept[:6]):
        words = text.split(" ")
        words[len(words) // 2] = "kabisa"  # one word changed: a near copy
        new.append({"url": f"https://near.example/{i}", "text": " ".join(words)})
    new.append({"url": "https://copy.example/0", "text": kept[6][1]})  # an exact copy
    (raw / "sw" / "part-00001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new), encoding="utf-8")
    if older_rule:
        with duckdb.connect(str(config.warehouse)) as con:
            con.execute("UPDATE near_dedup_state SET config = 'minhash-older-rule', component = NULL")
    result = materialize(config, FILTER_CHAIN.split(), "sw")
    assert result.success
    metadata = next(e for e in result.get_asset_materialization_events()
                    if e.asset_key.path == ["language_filtered_text"]).materialization.metadata
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        return {key: metadata[key].value for key in ("near_dedup_candidates_this_run",
                                                     "earlier_documents_clustered_again_this_run")}, {
            table: con.execute(f"SELECT * EXCLUDE ({drop}) FROM {table} WHERE lang = 'sw' ORDER BY ALL").fetchall()
            for table, drop in (("filtered_documents", "text, shard, shard_ingested_at"),
                                ("filter_rejections", "text, shard, shard_ingested_at"),
                                ("near_dedup_state", "signature"))
        }, {url for url, _ in kept}


def test_a_refresh_clusters_only_the_components_its_documents_reach_and_decides_the_same(tmp_path, monkeypatch):
    import xinst_assets.store.near_dedup as near_dedup

    pruned_counts, pruned, old_urls = _refresh_with_near_copies(tmp_path, "pruned")
    monkeypatch.setattr(near_dedup, "PRUNE_MAX_NEW", 0)  # the whole language clustered again
    full_counts, full, _ = _refresh_with_near_copies(tmp_path, "full")
    assert pruned == full
    # the 6 near copies reach the components of their 6 originals (and perhaps a few sharing a band by chance),
    # not the whole language (the exact copy is removed by dbt's exact dedup before near-dedup, but its
    # original's component is clustered again: its cluster grew)
    kept = len([row for row in full["filtered_documents"]])
    assert pruned_counts["near_dedup_candidates_this_run"] == 7
    assert 6 <= pruned_counts["earlier_documents_clustered_again_this_run"] < kept // 2, pruned_counts
    assert full_counts["earlier_documents_clustered_again_this_run"] == 0
    assert full_counts["near_dedup_candidates_this_run"] > kept
    older_counts, older, _ = _refresh_with_near_copies(tmp_path, "older", older_rule=True)
    assert older == full and older_counts == full_counts  # decisions of another rule: the whole language again
    rejections = pruned["filter_rejections"]
    near = [r for r in rejections if r[4] == "dedup_near_duplicate" and r[3].startswith("https://near.example/")]
    exact = [r for r in rejections if r[4] == "dedup_exact_duplicate" and r[3] == "https://copy.example/0"]
    # each near copy joins its original's cluster (a pair: a tie, the smaller doc id represents it)
    assert len(near) + sum(1 for r in full["filtered_documents"] if r[2].startswith("https://near.example/")) == 6
    assert len(exact) == 1, rejections


def _refresh_with_a_removed_representative(tmp_path, name: str):
    """sw's sample plus a shard with a new document X and another with its near copy Y (a duplicate of X);
    then X's shard is removed (Y must be decided again: it becomes a representative), an exact copy of a kept
    document arrives (its cluster grows) and near copies of two kept documents (their clusters grow).
    Returns the final near-dedup tables and the last run's metadata."""
    import shutil

    raw = tmp_path / name / "raw"
    shutil.copytree(SAMPLE_DIR / "raw" / "sw", raw / "sw")
    config = XinstConfig(registry=load_registry(), home=tmp_path / name / "home", raw_patterns=[str(raw)])
    lines = [json.loads(line) for line in (raw / "sw" / "part-00000.jsonl").read_text(encoding="utf-8").splitlines()]
    clean = [row for row in lines if _labels("sw").get(row["url"]) == "clean"]
    # X: one sentence of each of eight documents (near none of them), Y: X with a word changed
    x = " ".join(row["text"].split(". ")[0].strip() + "." for row in clean[:8])
    words = x.split(" ")
    words[len(words) // 3] = "kabisa"
    (raw / "sw" / "b-original.jsonl").write_text(json.dumps({"url": "https://x.example/", "text": x}) + "\n",
                                                 encoding="utf-8")
    (raw / "sw" / "c-near.jsonl").write_text(json.dumps({"url": "https://y.example/", "text": " ".join(words)}) + "\n",
                                             encoding="utf-8")
    assert materialize(config, FILTER_CHAIN.split(), "sw").success
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM filter_rejections WHERE url = 'https://y.example/' "
                           "AND reason = 'dedup_near_duplicate'").fetchone()[0] == 1
        kept = con.execute("SELECT text FROM filtered_documents WHERE lang = 'sw' AND url <> 'https://x.example/' "
                           "ORDER BY doc_id LIMIT 3").fetchall()
    (raw / "sw" / "b-original.jsonl").unlink()
    near = []
    for i, (text,) in enumerate(kept[:2]):
        edited = text.split(" ")
        edited[len(edited) // 2] = "kabisa"
        near.append({"url": f"https://near.example/{i}", "text": " ".join(edited)})
    rows = [{"url": "https://copy.example/", "text": kept[2][0]}, *near]
    (raw / "sw" / "d-new.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = materialize(config, FILTER_CHAIN.split(), "sw")
    assert result.success and all(_checks(result).values()), _checks(result)
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        return {table: con.execute(f"SELECT * EXCLUDE ({drop}) FROM {table} WHERE lang = 'sw' ORDER BY ALL").fetchall()
                for table, drop in (("filtered_documents", "shard, shard_ingested_at"),  # (paths of the home)
                                    ("filter_rejections", "shard, shard_ingested_at"), ("near_dedup_state", "signature"))
                }, con.execute("SELECT count(*) FROM screening_changes WHERE lang = 'sw'").fetchone()[0]


def test_a_refresh_looks_only_at_what_the_screening_changed_and_decides_as_over_the_whole_language(
        tmp_path, monkeypatch):
    """Near-dedup's refresh reads dbt's change log and compares and writes only the listed documents, those
    it decides and their representatives; the tables are exactly those of the same refresh over the whole
    language (a removed representative whose duplicate is decided again, a grown cluster by an exact and by
    near copies), and the applied entries are gone from the log."""
    import xinst_assets.store.near_dedup as near_dedup

    scoped, left = _refresh_with_a_removed_representative(tmp_path, "scoped")
    real = near_dedup.read_changes
    monkeypatch.setattr(near_dedup, "read_changes",
                        lambda con, lang, fingerprint: near_dedup.Changes(real(con, lang, fingerprint).through, True))
    whole, _ = _refresh_with_a_removed_representative(tmp_path, "whole")
    assert scoped == whole
    assert left == 0
    by_url = {row[3]: row for row in scoped["filtered_documents"]}
    assert "https://y.example/" in by_url and "https://x.example/" not in by_url  # Y decided again: kept
    assert not any(r[3] == "https://y.example/" for r in scoped["filter_rejections"])


SCREENING = ["raw_web_text", "document_signals", "screened_documents"]


def _screened(config, lang: str) -> list[tuple]:
    """The language's screened rows, reject_reason first (then every column, in the table's order)."""
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        return con.execute("SELECT reject_reason, * FROM screened_documents WHERE lang = ? ORDER BY ALL",
                           [lang]).fetchall()


def test_an_incremental_screening_equals_screening_the_language_again(tmp_path):
    """screened_documents recomputes only content ids whose copies or verdicts changed; the result is the same
    as screening the whole language again: a new copy that sorts first becomes the survivor, a removed shard
    takes its copies away, a new document arrives, and the others stay as they were."""
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(SAMPLE_DIR / "raw" / "sw", raw / "sw")
    lines = [json.loads(line) for line in (raw / "sw" / "part-00000.jsonl").read_text(encoding="utf-8").splitlines()]
    clean = {url for url, label in _labels("sw").items() if label == "clean"}
    news = [row for row in lines if row["url"] in clean][:3]
    # A second shard with an exact copy of a document: removed again before the refresh.
    (raw / "sw" / "part-00001.jsonl").write_text(json.dumps({**news[0], "url": "https://copy.example/gone"}) + "\n",
                                                 encoding="utf-8")
    config = XinstConfig(registry=load_registry(), home=tmp_path / "home", raw_patterns=[str(raw)])
    assert materialize(config, SCREENING, "sw").success
    before = _screened(config, "sw")
    assert sum(1 for row in before if row[0] == "dedup_exact_duplicate") >= 1

    (raw / "sw" / "part-00001.jsonl").unlink()
    first = [{**news[1], "url": "https://copy.example/earlier"},  # sorts before part-00000: the new survivor
             {"text": news[2]["text"] + "\n\nHabari mpya kabisa kuhusu mradi huu.", "url": "https://new.example/1"}]
    (raw / "sw" / "a-earlier.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first), encoding="utf-8")
    assert materialize(config, SCREENING, "sw").success
    refreshed = _screened(config, "sw")

    with duckdb.connect(str(config.warehouse)) as con:  # no rows left: the next build screens the whole language
        con.execute("DELETE FROM screened_documents WHERE lang = 'sw'")
    assert materialize(config, ["screened_documents"], "sw").success
    assert refreshed == _screened(config, "sw")

    by_url = {row[4]: row for row in refreshed}
    assert "https://copy.example/gone" not in by_url and "https://new.example/1" in by_url
    assert by_url["https://copy.example/earlier"][0] is None  # survivor: first by shard order
    assert by_url[news[1]["url"]][0] == "dedup_exact_duplicate"
    untouched = [row for row in before if row[2] not in {by_url["https://copy.example/earlier"][2]}
                 and row[4] != "https://copy.example/gone" and row[2] != by_url[news[0]["url"]][2]]
    assert set(untouched) <= set(refreshed)


def test_verdicts_of_documents_gone_from_raw_go_and_the_others_stay(tmp_path):
    """A removed shard takes the verdicts of its documents with it, unless a copy of a document is still in
    another shard; a shard that comes back is screened again; a refresh with nothing removed drops nothing."""
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(SAMPLE_DIR / "raw" / "sw", raw / "sw")
    lines = [json.loads(line) for line in (raw / "sw" / "part-00000.jsonl").read_text(encoding="utf-8").splitlines()]
    kept_copy = {**lines[0], "url": "https://copy.example/kept"}  # its document stays (part-00000 has it)
    alone = {"text": lines[1]["text"] + "\n\nSehemu mpya ya habari hii, iliyoandikwa upya kabisa leo.",
             "url": "https://alone.example/1"}
    extra = raw / "sw" / "part-00001.jsonl"
    extra.write_text("".join(json.dumps(r) + "\n" for r in (kept_copy, alone)), encoding="utf-8")
    config = XinstConfig(registry=load_registry(), home=tmp_path / "home", raw_patterns=[str(raw)])

    def verdicts() -> dict[str, tuple]:
        with duckdb.connect(str(config.warehouse), read_only=True) as con:
            return {row[0]: row for row in con.execute(
                "SELECT doc_id, reject_reason, first_seen_at, signals_version FROM document_signals "
                "WHERE lang = 'sw'").fetchall()}

    def raw_ids(*conditions: str) -> set[str]:
        with duckdb.connect(str(config.warehouse), read_only=True) as con:
            return {r[0] for r in con.execute(
                f"SELECT DISTINCT doc_id FROM raw_documents WHERE lang = 'sw' {' '.join(conditions)}").fetchall()}

    assert materialize(config, SCREENING, "sw").success
    first = verdicts()
    assert set(first) == raw_ids()
    (alone_id,) = raw_ids("AND url = 'https://alone.example/1'")

    assert materialize(config, SCREENING, "sw").success  # nothing removed: nothing dropped, nothing screened
    assert verdicts() == first

    extra.unlink()
    assert materialize(config, SCREENING, "sw").success
    after = verdicts()
    assert set(after) == raw_ids() == set(first) - {alone_id}
    assert all(after[doc] == first[doc] for doc in after)  # the others untouched, the kept copy's included
    assert alone_id not in {row[2] for row in _screened(config, "sw")}

    extra.write_text(json.dumps(alone) + "\n", encoding="utf-8")
    assert materialize(config, SCREENING, "sw").success
    back = verdicts()
    assert set(back) == set(first) and back[alone_id][1:2] == first[alone_id][1:2]
    assert back[alone_id][3] > first[alone_id][3]  # screened again: a later write


def test_verdicts_written_again_are_screened_again(tmp_path):
    """A verdict that changes without any change to the raw rows (here a stricter word minimum: every document
    is screened again) reaches screened_documents through the verdicts' write number, and the refreshed table
    is the same as screening the language from nothing."""
    import dataclasses

    config = _sample_config(tmp_path / "home")
    assert materialize(config, SCREENING, "sw").success
    before = _screened(config, "sw")
    stricter = dataclasses.replace(config.registry.get("sw"), quality={"min_words": 140})
    config = dataclasses.replace(config, registry=dataclasses.replace(
        config.registry, languages=tuple(stricter if lang.code == "sw" else lang for lang in config.registry.languages)))
    assert materialize(config, SCREENING, "sw").success
    refreshed = _screened(config, "sw")
    assert refreshed != before
    assert sum(1 for row in refreshed if (row[0] or "").startswith("quality_")) > sum(
        1 for row in before if (row[0] or "").startswith("quality_"))
    with duckdb.connect(str(config.warehouse)) as con:
        versions = con.execute("SELECT DISTINCT signals_version FROM screened_documents WHERE lang = 'sw'").fetchall()
        writes = con.execute("SELECT signals_version FROM document_signal_writes WHERE lang = 'sw' ORDER BY 1").fetchall()
        con.execute("DELETE FROM screened_documents WHERE lang = 'sw'")
    assert versions == [(2,)] and writes == [(1,), (2,)]
    assert materialize(config, ["screened_documents"], "sw").success
    assert refreshed == _screened(config, "sw")


def _near_dedup_outcome(config, lang: str) -> dict[str, list[tuple]]:
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        # (shard_ingested_at: when each home read the shard)
        return {table: con.execute(f"SELECT * {drop} FROM {table} WHERE lang = ? ORDER BY ALL", [lang]).fetchall()
                for table, drop in (("near_dedup_state", ""), ("filtered_documents", "EXCLUDE (shard_ingested_at)"))}


def test_documents_screened_without_a_stored_signature_are_signed_from_their_text(tmp_path, filtered_home):
    """Warehouses screened before signatures were stored with the signals: near-dedup signs those documents'
    texts itself and decides exactly as with the stored signatures."""
    config = _sample_config(tmp_path / "home")
    assert materialize(config, ["raw_web_text", "document_signals", "screened_documents"], "sw").success
    with duckdb.connect(str(config.warehouse)) as con:
        con.execute("UPDATE document_signals SET minhash = NULL WHERE lang = 'sw'")
    result = materialize(config, ["language_filtered_text", "filter_rejections"], "sw")
    assert result.success
    signed_from_text = _near_dedup_outcome(config, "sw")
    assert signed_from_text["filtered_documents"]
    assert signed_from_text == _near_dedup_outcome(filtered_home[0], "sw")
