import math

import numpy as np
import polars as pl
import pytest

from xinst_assets.core.diversify import (
    NEAR_IDENTICAL,
    X_INSTRUCTION_BUDGET,
    DiversifyConfig,
    cluster,
    cluster_entropy,
    compare_with_random,
    diversify,
    near_identical,
)
from xinst_assets_tests.diversify.conftest import blobs

SIZES = [60, 20, 10, 6, 4]  # a long tail of five well-separated clusters


def pairs_from(rows: list[dict]) -> pl.DataFrame:
    base = {"response": "r", "label": 3, "refined": False}
    return pl.DataFrame([{**base, **row} for row in rows])


def unit(*rows: list[float]) -> np.ndarray:
    matrix = np.asarray(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


# --- near-identical instructions ----------------------------------------------------------------------------


def test_near_identical_instructions_are_dropped_keeping_the_higher_score():
    pairs = pairs_from(
        [
            {"pair_id": "a", "instruction": "Write a news article about floods.", "score": 2.1},
            {"pair_id": "b", "instruction": "Write a news article on floods", "score": 2.9},
            {"pair_id": "c", "instruction": "Summarize the report.", "score": 1.5},
        ]
    )
    vectors = unit([1.0, 0.0, 0.0], [1.0, 0.05, 0.0], [0.0, 1.0, 0.0])  # cos(a, b) = 0.9988
    result = diversify(pairs, vectors, DiversifyConfig(budget=None, n_clusters=1))

    assert sorted(result.pool["pair_id"].to_list()) == ["b", "c"]
    assert result.dropped.select("pair_id", "reason", "duplicate_of").rows() == [("a", NEAR_IDENTICAL, "b")]
    assert result.dropped["similarity"][0] == pytest.approx(0.99875, abs=1e-4)
    assert result.report.near_identical_dropped == 1


def test_ties_in_score_keep_the_smaller_pair_id():
    pairs = pairs_from(
        [
            {"pair_id": "z", "instruction": "x", "score": 2.0},
            {"pair_id": "m", "instruction": "x", "score": 2.0},
        ]
    )
    result = diversify(pairs, unit([1.0, 0.0], [1.0, 0.0]), DiversifyConfig(budget=None))
    assert result.pool["pair_id"].to_list() == ["m"]
    assert result.dropped["duplicate_of"].to_list() == ["m"]


def test_near_identical_instructions_from_the_real_embedder(minilm):
    instructions = [
        "Write a news article about the floods in Kenya.",
        "Write a news article on the floods in Kenya",
        "Write a news article about the floods in Mombasa.",
        "Summarize the main points of a speech on climate policy.",
    ]
    pairs = pairs_from(
        [{"pair_id": f"p{i}", "instruction": t, "score": 3.0 - i / 10} for i, t in enumerate(instructions)]
    )
    result = diversify(pairs, minilm.embed(instructions), DiversifyConfig(budget=None))
    assert result.dropped.select("pair_id", "duplicate_of").rows() == [("p1", "p0")]


def test_without_a_near_identical_rule_every_row_stays_in_the_pool():
    pairs = pairs_from([{"pair_id": p, "instruction": "x", "score": 2.0} for p in "abc"])
    result = diversify(
        pairs, unit([1, 0], [1, 0], [1, 0]), DiversifyConfig(budget=None, near_identical_cosine=None)
    )
    assert result.report.pool == 3
    assert result.dropped.is_empty()


def test_the_blocked_near_identical_pass_matches_a_plain_greedy_pass():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(300, 8))
    vectors = np.vstack(
        [centres, centres[rng.integers(0, 300, 2700)] + rng.normal(scale=0.08, size=(2700, 8))]
    )
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    keep, duplicate_of, _ = near_identical(vectors, 0.95)  # 3000 rows: three blocks of 1024

    expected_keep, kept = np.zeros(len(vectors), dtype=bool), []
    for i, v in enumerate(vectors):
        if not kept or (vectors[kept] @ v).max() < 0.95:
            expected_keep[i] = True
            kept.append(i)
    assert np.array_equal(keep, expected_keep)
    assert 300 < keep.sum() < 3000  # the test data has both kinds
    dropped = np.flatnonzero(~keep)
    assert keep[duplicate_of[dropped]].all()
    assert (duplicate_of[dropped] < dropped).all()


# --- clustering and round-robin selection -------------------------------------------------------------------


def test_the_selection_is_the_same_for_the_same_seed_and_any_input_order():
    pairs, vectors = blobs(SIZES)
    config = DiversifyConfig(budget=30, n_clusters=5, seed=11)
    first = diversify(pairs, vectors, config)
    again = diversify(pairs, vectors, config)
    shuffled = np.random.default_rng(1).permutation(len(pairs))
    reordered = diversify(pairs[shuffled], vectors[shuffled], config)

    assert first.selected["pair_id"].to_list() == again.selected["pair_id"].to_list()
    assert first.selected["pair_id"].to_list() == reordered.selected["pair_id"].to_list()
    assert first.selected["cluster"].to_list() == reordered.selected["cluster"].to_list()


def test_the_budget_is_respected():
    pairs, vectors = blobs(SIZES)
    assert diversify(pairs, vectors, DiversifyConfig(budget=17, n_clusters=5)).report.rows_out == 17
    everything = diversify(
        pairs, vectors, DiversifyConfig(budget=1000, n_clusters=5, near_identical_cosine=None)
    )
    assert everything.report.rows_out == everything.report.pool == len(pairs)
    no_budget = diversify(pairs, vectors, DiversifyConfig(budget=None, n_clusters=5))
    assert no_budget.report.rows_out == no_budget.report.pool


def test_the_first_picks_come_from_distinct_clusters():
    pairs, vectors = blobs(SIZES)
    result = diversify(pairs, vectors, DiversifyConfig(budget=20, n_clusters=5))
    selected = result.selected.sort("rank")

    assert sorted(selected["cluster"].to_list()[:5]) == [0, 1, 2, 3, 4]
    # round r takes the r-th best pair of each cluster: cluster ranks never go down along the selection
    ranks = selected["cluster_rank"].to_list()
    assert ranks == sorted(ranks)
    # every cluster has at least 4 pairs, so 20 picks over 5 clusters flatten the long tail: 4 from each
    assert min(result.report.cluster_sizes) >= 4
    assert result.report.selected_cluster_sizes == (4, 4, 4, 4, 4)


def test_within_a_cluster_the_best_scores_are_picked_first():
    pairs, vectors = blobs(SIZES)
    result = diversify(pairs, vectors, DiversifyConfig(budget=20, n_clusters=5))
    for c in range(5):
        members = result.pool.filter(pl.col("cluster") == c).sort(
            ["score", "pair_id"], descending=[True, False]
        )
        picked = result.selected.filter(pl.col("cluster") == c).sort("rank")
        assert picked["pair_id"].to_list() == members["pair_id"].to_list()[: len(picked)]
        assert picked["cluster_rank"].to_list() == list(range(len(picked)))


def test_within_a_round_the_better_scored_pair_is_picked_first():
    pairs, vectors = blobs(SIZES)
    result = diversify(pairs, vectors, DiversifyConfig(budget=7, n_clusters=5))
    first_round = result.selected.filter(pl.col("cluster_rank") == 0).sort("rank")
    keys = list(zip(first_round["score"].to_list(), first_round["pair_id"].to_list()))
    assert keys == sorted(keys, key=lambda k: (-k[0], k[1]))


def test_selected_rows_keep_their_columns_and_embeddings():
    pairs, vectors = blobs(SIZES)
    result = diversify(pairs, vectors, DiversifyConfig(budget=10, n_clusters=5))
    assert result.selected.columns == [*pairs.columns, "cluster", "cluster_rank", "rank"]
    row_of = {p: i for i, p in enumerate(pairs["pair_id"].to_list())}
    expected = vectors[[row_of[p] for p in result.selected["pair_id"].to_list()]]
    assert np.allclose(result.selected_embeddings, expected, atol=1e-6)
    assert result.pool["selected"].sum() == 10


def test_cluster_ids_are_numbered_by_size():
    _, vectors = blobs([5, 30, 12])
    labels = cluster(vectors, 3, DiversifyConfig(seed=0))
    assert np.bincount(labels).tolist() == [30, 12, 5]


def test_minibatch_kmeans_is_used_for_large_pools_and_is_deterministic():
    _, vectors = blobs([300, 150, 50], dim=8)
    config = DiversifyConfig(minibatch_above=100, minibatch_size=128, seed=5)
    first, second = cluster(vectors, 3, config), cluster(vectors, 3, config)
    assert np.array_equal(first, second)
    assert np.bincount(first).tolist() == [300, 150, 50]


def test_k_is_derived_from_the_budget_and_clamped_to_the_pool():
    config = DiversifyConfig()  # X-Instruction's 32k budget, 50 pairs per cluster
    assert config.budget == X_INSTRUCTION_BUDGET == 32_000
    assert config.clusters_for(100_000) == 640
    assert config.clusters_for(1_000) == 20  # a pool under the budget: k from the pool
    assert config.clusters_for(30) == 2
    assert config.clusters_for(1) == 1
    assert DiversifyConfig(n_clusters=8).clusters_for(5) == 5
    assert DiversifyConfig(budget=None).clusters_for(5_000) == 100


def test_an_empty_pool_gives_an_empty_selection():
    pairs = pairs_from([{"pair_id": "a", "instruction": "x", "score": 1.0}]).clear()
    result = diversify(pairs, np.zeros((0, 4), dtype=np.float32))
    assert result.selected.is_empty() and result.report.rows_out == 0 and result.report.n_clusters == 0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, v: (p.drop("score"), v), "lack columns"),
        (lambda p, v: (p, v[:-1]), "embedding rows"),
        (lambda p, v: (p.with_columns(pl.lit("same").alias("pair_id")), v), "unique"),
        (lambda p, v: (p.with_columns(pl.lit(None, dtype=pl.Float64).alias("score")), v), "no score"),
        (lambda p, v: (p, np.full_like(v, np.nan)), "NaN"),
        (lambda p, v: (p.with_columns(pl.lit(1).alias("cluster")), v), "output column"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(change, message):
    pairs, vectors = blobs([3, 3])
    with pytest.raises(ValueError, match=message):
        diversify(*change(pairs, vectors))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"budget": 0},
        {"near_identical_cosine": 1.5},
        {"n_clusters": 0},
        {"pairs_per_cluster": 0},
        {"verb_weight": 0.0},
    ],
)
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        DiversifyConfig(**kwargs)


# --- diversity measures -------------------------------------------------------------------------------------


def test_cluster_entropy_in_bits():
    assert cluster_entropy(np.array([0, 1, 2, 3])) == pytest.approx(2.0)
    assert cluster_entropy(np.array([7, 7, 7])) == 0.0
    assert cluster_entropy([]) == 0.0
    assert cluster_entropy(["write", "write", "explain", "question"]) == pytest.approx(1.5)
    assert cluster_entropy(np.array([0, 0, 0, 1])) == pytest.approx(
        -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    )


def test_the_diversified_set_has_higher_cluster_entropy_than_a_random_sample(long_tail):
    pairs, vectors = long_tail  # 120 "Write a news article about ..." + 40 instructions of 8 other kinds
    for seed in (0, 1, 2):
        result = diversify(pairs, vectors, DiversifyConfig(budget=40, n_clusters=8, seed=seed))
        comparison = compare_with_random(result.pool, seed=seed)
        assert comparison.size == 40
        assert comparison.cluster_entropy_diversified == pytest.approx(3.0)  # 5 from each of 8 clusters
        assert comparison.cluster_entropy_diversified > comparison.cluster_entropy_random + 0.2


def test_mixing_the_verb_into_the_clustering_spreads_the_verbs(long_tail):
    pairs, vectors = long_tail
    for seed in (0, 1, 2):
        plain = diversify(pairs, vectors, DiversifyConfig(budget=40, n_clusters=10, seed=seed))
        mixed = diversify(
            pairs, vectors, DiversifyConfig(budget=40, n_clusters=10, seed=seed, verb_weight=1.0)
        )
        comparison = compare_with_random(mixed.pool, seed=seed)
        assert comparison.verb_entropy_diversified > comparison.verb_entropy_random + 1.0
        news = {
            name: r.selected.filter(pl.col("mode") == "news").height
            for name, r in (("plain", plain), ("mixed", mixed))
        }
        # a random 40 of this pool has 30 news pairs; clustering by topic alone does no better than that
        assert news["mixed"] <= 20 and news["plain"] >= 28


def test_the_report_adds_up(long_tail):
    pairs, vectors = long_tail
    report = diversify(pairs, vectors, DiversifyConfig(budget=50)).report
    assert report.rows_in == len(pairs) == report.pool + report.near_identical_dropped
    assert report.n_clusters == 2  # round(50 / 50) clamped to at least 2
    assert (
        sum(report.cluster_sizes) == report.pool
        and sum(report.selected_cluster_sizes) == report.rows_out == 50
    )
    metadata = report.as_metadata()
    assert metadata["rows_out"] == 50 and metadata["config"]["budget"] == 50
