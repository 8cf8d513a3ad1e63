"""Near-dedup's refresh against a run over everything: whatever order documents arrive in and however they are
split over nightly refreshes, the stored clusters and representatives (and the kept set and rejections) are
exactly those of one run over the same documents. Near-dedup's own steps on a real warehouse file, fed as dbt's
screening leaves it (xinst_assets_tests/dedup_tables.py)."""

import random

import duckdb
import pytest

from xinst_assets.languages import load_registry
from xinst_assets.resources.warehouse import Warehouse
from xinst_assets_tests.dedup_cases import Words, edited_group, jaccard_of
from xinst_assets_tests.dedup_tables import ScreenedLanguage


@pytest.fixture
def new_language(tmp_path):
    """``new_language(name)``: an empty warehouse with one language (Swahili's settings)."""
    lang = load_registry().get("sw")
    return lambda name: ScreenedLanguage(Warehouse(path=str(tmp_path / f"{name}.duckdb")), lang)


def _full_run(new_language, texts: list[str]) -> ScreenedLanguage:
    full = new_language(f"full-{len(texts)}-{random.random()}")
    full.put(texts)
    full.near_dedup()
    return full


def _corpus(seed: int) -> list[str]:
    """Groups (an original, copies edited in different places, a hard negative of its template), exact reposts
    of some members, and unrelated documents."""
    words, rng = Words(seed), random.Random(seed)
    texts = []
    for g in range(7):
        group = edited_group(words, f"g{g}", copies=2 + g % 3, shared=9)
        texts += group.members() + group.negatives
        texts += rng.sample(group.members(), 1)  # a repost
    texts += [" ".join(words.sentences(rng.randint(6, 14))) for _ in range(25)]
    return texts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_documents_arriving_in_any_order_over_several_refreshes_end_in_the_clusters_of_one_run(new_language, seed):
    texts = _corpus(seed)
    full = _full_run(new_language, texts)
    expected = full.tables()
    assert sum(len(m) > 1 for m in full.clusters().values()) == 7  # one cluster per group
    rng = random.Random(100 + seed)
    order = list(texts)
    rng.shuffle(order)
    cuts = sorted(rng.sample(range(1, len(order)), 4))
    night = new_language(f"nightly-{seed}")
    members = []
    for start, end in zip([0, *cuts], [*cuts, len(order)]):
        night.put(order[start:end])
        staged = night.near_dedup()["staged"]
        members.append(staged.members)
    assert night.tables() == expected
    # a refresh clustered its new documents with the components they reach, not the whole language
    assert any(0 < m < len(set(texts)) // 2 for m in members[1:]), members


def test_an_original_arriving_after_two_of_its_copies_joins_them_into_its_cluster(new_language):
    """Two copies edited in different places are not near each other: two clusters, until the original
    that both copy arrives; it represents the one cluster, as in a run over the three."""
    group = edited_group(Words(31), "g", copies=2)
    assert jaccard_of(*group.copies) < 0.6
    night = new_language("night")
    night.put(group.copies)
    night.near_dedup()
    assert len(night.clusters()) == 2
    [original] = night.put([group.original])
    night.near_dedup()
    assert set(night.clusters()) == {original} and len(night.clusters()[original]) == 3
    assert night.tables() == _full_run(new_language, group.members()).tables()


def test_a_removed_representative_leaves_its_copies_clustered_as_a_run_over_the_rest(new_language):
    words = Words(32)
    group = edited_group(words, "g", copies=3)
    other = edited_group(words, "h", copies=2)
    night = new_language("night")
    ids = night.put(group.members() + other.members())
    night.near_dedup()
    original = ids[0]
    assert original in night.clusters() and len(night.clusters()[original]) == 4
    night.remove([original])
    summary = night.near_dedup()
    assert summary["staged"].members == 3 and summary["staged"].todo == 0  # its copies, not the other group
    rest = group.copies + other.members()
    assert night.tables() == _full_run(new_language, rest).tables()
    assert original not in {d for m in night.clusters().values() for d in m}


def test_a_stored_representative_that_would_no_longer_be_chosen_is_replaced(new_language):
    """A pair (a tie: the smaller doc id represents it); then copies of the other member arrive, which becomes
    the most central: the refresh moves the cluster to it, as a run over all of them does."""
    words = Words(33)
    body = words.sentences(14)
    variant = list(body)
    variant[3:5] = words.sentences(2)
    texts = {"body": body, "variant": variant}
    night = new_language("night")
    ids = dict(zip(texts, night.put([" ".join(t) for t in texts.values()])))
    night.near_dedup()
    (rep,) = night.clusters()
    other = next(name for name, doc_id in ids.items() if doc_id != rep)
    more = []
    for k in range(2):
        text = list(texts[other])
        text[9 + 2 * k : 10 + 2 * k] = words.sentences(1)
        more.append(" ".join(text))
    assert all(jaccard_of(" ".join(texts[other]), t) > 0.8 for t in more)
    night.put(more)
    night.near_dedup()
    assert set(night.clusters()) == {ids[other]} and rep in night.clusters()[ids[other]]
    assert night.tables() == _full_run(new_language, [" ".join(t) for t in texts.values()] + more).tables()


def test_a_repost_of_a_copy_makes_it_the_representative(new_language):
    """Exact copies count in the rank: the version reposted verbatim most represents a pair."""
    group = edited_group(Words(34), "g", copies=1, edited=1)
    night = new_language("night")
    original, copy = night.put(group.members())
    night.near_dedup()
    rep = min(original, copy)  # a tie: the smaller doc id
    assert set(night.clusters()) == {rep}
    repost = copy if rep == original else original  # the other one, reposted verbatim
    text = group.members()[[original, copy].index(repost)]
    night.put([text])
    night.near_dedup()
    assert set(night.clusters()) == {repost}
    with duckdb.connect(str(night.warehouse.db_path), read_only=True) as con:
        assert con.execute("SELECT cluster_size FROM filtered_documents WHERE doc_id = ?", [repost]).fetchone() == (3,)
    assert night.tables() == _full_run(new_language, group.members() + [text]).tables()


def test_the_refresh_settles_pairs_near_the_threshold_with_texts_from_the_warehouse(new_language):
    group = edited_group(Words(35), "g", copies=2, shared=9)
    night = new_language("night")
    night.put([group.original])
    night.near_dedup()
    night.put(group.copies + group.negatives)
    summary = night.near_dedup()
    assert summary["index"].exact_checks > 0  # copies at 0.74 and a template page at 0.49
    assert len(night.clusters()) == 2


def test_a_refresh_writes_only_the_decisions_that_change(new_language):
    """A copy joining a cluster brings its whole component back to be clustered again; of the component's
    stored decisions only those that change are written (the earlier documents' rows, with their signatures and
    band keys, stay as they are), and the tables still equal those of one run."""
    group = edited_group(Words(57), "g", copies=3)
    night = new_language("night")
    night.put(group.members()[:-1])
    first = night.near_dedup()
    assert first["decisions_written"] == len(group.members()) - 1

    def decisions():
        with night.warehouse.read() as con:
            return set(con.execute("SELECT doc_id, keep, duplicate_of, content_key, component FROM near_dedup_state "
                                   "WHERE lang = ?", [night.lang.code]).fetchall())

    before = decisions()
    night.put(group.members()[-1:])
    summary = night.near_dedup()
    assert summary["staged"].members == len(before)  # the whole component was clustered again
    changed = {row[0] for row in before - decisions()}
    assert summary["decisions_written"] == 1 + len(changed)  # the new copy, and the decisions that changed
    assert len(changed) < len(before)
    assert night.tables() == _full_run(new_language, group.members()).tables()
