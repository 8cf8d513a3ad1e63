"""Stage 5: a diversified dataset, sampled across clusters of English-instruction embeddings.

Web-derived instructions are long-tailed (X-Instruction's most common verbs: write news / article / headline,
summarize, create, explain, translate), so taking the best-scored pairs alone would give mostly news-writing
tasks. The selection here (METHOD.md, stage 5):

1. **Near-identical instructions** (cosine similarity of their embeddings >= ``near_identical_cosine``) are
   dropped, keeping the best-scored one: rows are visited best score first (ties by ``pair_id``), and a row is
   dropped when it is that close to a row already kept. Every dropped row keeps the pair it duplicates and the
   similarity (nothing silently lost). The comparison is exact, in blocks of rows against the kept rows, so
   memory stays bounded (about 128 MB of similarities at a time) for any pool size.
2. **k-means** (scikit-learn; ``MiniBatchKMeans`` above ``minibatch_above`` rows) over the remaining
   embeddings. Cluster ids are renumbered by size, 0 = largest.
3. **Round-robin over clusters**: round r takes the r-th best pair of every cluster that still has one (best
   score first, ties by ``pair_id``); within a round, better-scored pairs come first, so a budget that ends
   mid-round keeps the round's best. Stops at the per-language budget.

Everything is deterministic for a given seed and input (the input's row order does not matter).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Hashable, Iterable, Sequence

import numpy as np
import polars as pl

REQUIRED_COLUMNS = ("pair_id", "instruction", "response", "score", "label", "refined")
NEAR_IDENTICAL = "diversify_near_identical_instruction"

# X-Instruction samples 32k pairs per language (320k over its 10 languages) for its final dataset.
X_INSTRUCTION_BUDGET = 32_000
# Similarity values held in memory at once by the near-identical pass (float32: 32M values = 128 MB).
_SIMILARITY_BLOCK_VALUES = 32 * 1024 * 1024


@dataclass(frozen=True)
class DiversifyConfig:
    """Settings of the diversified selection. ``None`` turns a rule off."""

    # Pairs kept per language; None keeps the whole (deduplicated) pool, still clustered for the report.
    budget: int | None = X_INSTRUCTION_BUDGET
    # Two instructions whose unit embeddings have cosine >= this are "the same instruction" (xinst).
    # Measured with MiniLM: rewordings score 0.95-0.99 ("... news article about the floods in Kenya." /
    # "... news article on the floods in Kenya" 0.986; "Write a short news report on ..." 0.958), while the
    # same template with another topic stays at 0.5-0.8 (floods in Nairobi / in Mombasa 0.81; floods / an
    # election 0.73). None: no near-identical pass.
    near_identical_cosine: float | None = 0.95
    # Number of k-means clusters; None derives it from the budget (see ``pairs_per_cluster``).
    n_clusters: int | None = None
    # (xinst) With k = round(min(budget, pool) / pairs_per_cluster), a full budget takes about this many pairs
    # per cluster on average. X-Instruction does not state k. 50 means 640 clusters for a 32k budget: enough
    # that a dominant mode ("write a news article about X") splits into topical sub-clusters, each with
    # enough members to choose the best-scored ones; and MiniBatchKMeans with k=640 on 100k x 384 fits in
    # 35-60 s on 2 cores (2-3 min when they are shared; bench/bench_diversify.py). Clamped to [2, pool].
    pairs_per_cluster: int = 50
    # Plain KMeans (Lloyd) up to this many rows; MiniBatchKMeans above (Lloyd is O(n k d) per iteration over
    # all rows: 100k x 640 x 384 ~ 25 GFLOP per iteration, minutes to converge on 2 cores).
    minibatch_above: int = 10_000
    # MiniBatchKMeans batch: scikit-learn recommends more than 256 x cores; 4096 keeps the centres stable.
    minibatch_size: int = 4096
    # k-means++ initialisations tried (the lowest inertia wins); 1 is scikit-learn's default for k-means++.
    # Each one is a k-means++ pass over the init sample, the costliest part at large k: measured for k=640 on
    # 100k x 384 with MiniBatchKMeans, 26 s with 1 init and 159 s with 3, for the same inertia (within 0.01%).
    n_init: int = 1
    # (xinst, off by default) Weight of the instruction's first verb in the clustering space: a one-hot of the
    # verb (:func:`xinst_assets.core.verbs.instruction_verb`; the most common ``max_verbs`` verbs, the rest
    # share one column) scaled by this weight is appended to the unit embedding, so k-means separates tasks
    # before topics. Sentence embeddings group instructions mostly by topic: on a pool where 75% of
    # instructions are "Write a news article about <event> in <city>" (xinst_assets_tests/diversify), plain
    # clustering (k=8-12, 40 picks) splits the news by city and the round-robin picks news at least as often
    # as a random sample (31-39 of 40 vs 30; verb entropy 0.2-1.3 bits vs 1.1-1.5 random); with weight 1.0
    # news falls to 12-20 of 40 and the verb entropy rises to 2.4-3.0 bits. None: cluster the embeddings
    # alone, as METHOD.md says.
    verb_weight: float | None = None
    max_verbs: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.budget is not None and self.budget < 1:
            raise ValueError(
                f"DiversifyConfig.budget must be at least 1 (or None for no budget), got {self.budget}"
            )
        if self.near_identical_cosine is not None and not -1.0 <= self.near_identical_cosine <= 1.0:
            raise ValueError(
                f"near_identical_cosine must be within [-1, 1], got {self.near_identical_cosine}"
            )
        if self.n_clusters is not None and self.n_clusters < 1:
            raise ValueError(f"n_clusters must be at least 1 (or None to derive it), got {self.n_clusters}")
        if self.verb_weight is not None and self.verb_weight <= 0:
            raise ValueError(f"verb_weight must be positive (or None for off), got {self.verb_weight}")
        for name in ("pairs_per_cluster", "minibatch_size", "n_init", "max_verbs"):
            if getattr(self, name) < 1:
                raise ValueError(f"DiversifyConfig.{name} must be at least 1, got {getattr(self, name)}")

    def clusters_for(self, pool_size: int) -> int:
        """The k used for a pool of ``pool_size`` rows (after the near-identical pass)."""
        if pool_size <= 1:
            return pool_size
        if self.n_clusters is not None:
            return min(self.n_clusters, pool_size)
        target = pool_size if self.budget is None else min(self.budget, pool_size)
        return int(min(max(round(target / self.pairs_per_cluster), 2), pool_size))


@dataclass(frozen=True)
class DiversifyReport:
    """What the selection did: counts in/out, and the cluster sizes of the pool and of the selection."""

    rows_in: int
    near_identical_dropped: int
    pool: int  # rows left after the near-identical pass
    rows_out: int
    n_clusters: int
    cluster_sizes: tuple[int, ...]  # pool rows per cluster id (id 0 is the largest)
    selected_cluster_sizes: tuple[int, ...]  # selected rows per cluster id
    pool_cluster_entropy_bits: float
    selected_cluster_entropy_bits: float
    config: DiversifyConfig

    def as_metadata(self) -> dict[str, Any]:
        """A flat, JSON-friendly summary (for materialization metadata)."""
        return {
            "rows_in": self.rows_in,
            "near_identical_dropped": self.near_identical_dropped,
            "pool": self.pool,
            "rows_out": self.rows_out,
            "n_clusters": self.n_clusters,
            "largest_cluster": max(self.cluster_sizes, default=0),
            "clusters_in_selection": sum(1 for s in self.selected_cluster_sizes if s),
            "pool_cluster_entropy_bits": round(self.pool_cluster_entropy_bits, 4),
            "selected_cluster_entropy_bits": round(self.selected_cluster_entropy_bits, 4),
            "config": asdict(self.config),
        }


@dataclass(frozen=True)
class DiversifyResult:
    """The selection and everything needed to audit it."""

    selected: pl.DataFrame  # input columns + cluster, cluster_rank, rank (selection order, 0 = first pick)
    pool: (
        pl.DataFrame
    )  # every row left after the near-identical pass: input columns + cluster, cluster_rank, selected
    dropped: pl.DataFrame  # pair_id, reason, duplicate_of, similarity
    selected_embeddings: np.ndarray  # embedding rows of ``selected``, in its order
    report: DiversifyReport


# --- entry point --------------------------------------------------------------------------------------------


def diversify(
    pairs: pl.DataFrame, embeddings: np.ndarray, config: DiversifyConfig = DiversifyConfig()
) -> DiversifyResult:
    """Select a diverse, well-scored subset of ``pairs`` (one language) by clustering instruction embeddings.

    ``pairs`` needs columns pair_id (unique), instruction, response, score (not null), label, refined; other
    columns are carried through. ``embeddings`` is a ``(len(pairs), dim)`` matrix aligned with the rows (rows
    are normalised to unit length here). See the module docstring for the steps.
    """
    _validate(pairs, embeddings)
    # Priority order: best score first, ties by pair_id. Everything below works in this order.
    order = np.asarray(
        pairs.with_row_index("_row").sort(["score", "pair_id"], descending=[True, False])["_row"].to_numpy(),
        dtype=np.int64,
    )
    ranked = pairs[order]
    vectors = _unit_rows(embeddings[order])

    if config.near_identical_cosine is not None and len(ranked) > 1:
        keep, duplicate_of, similarity = near_identical(vectors, config.near_identical_cosine)
    else:
        keep = np.ones(len(ranked), dtype=bool)
        duplicate_of, similarity = (
            np.full(len(ranked), -1, dtype=np.int64),
            np.zeros(len(ranked), dtype=np.float32),
        )
    ids = ranked["pair_id"]
    gone = np.flatnonzero(~keep)
    dropped = pl.DataFrame(
        {
            "pair_id": ids.gather(gone),
            "reason": pl.Series([NEAR_IDENTICAL] * len(gone), dtype=pl.String),
            "duplicate_of": ids.gather(duplicate_of[gone]),
            "similarity": pl.Series(similarity[gone], dtype=pl.Float32),
        }
    )
    pool, pool_vectors = ranked.filter(pl.Series(keep)), vectors[keep]

    k = config.clusters_for(len(pool))
    features = pool_vectors
    if config.verb_weight is not None:
        features = with_verb_features(
            pool_vectors, pool["instruction"].to_list(), config.verb_weight, config.max_verbs
        )
    labels = cluster(features, k, config)
    del features
    pool = pool.with_columns(pl.Series("cluster", labels, dtype=pl.Int64))
    # Rows are already in priority order, so the position within a cluster is the within-cluster rank.
    pool = pool.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over("cluster").alias("cluster_rank"))
    # Round-robin: round = cluster_rank; within a round, the best-scored first (pool order breaks ties).
    pick_order = pool.with_row_index("_pos").sort(["cluster_rank", "_pos"])["_pos"].to_numpy()
    take = len(pool) if config.budget is None else min(config.budget, len(pool))
    chosen = np.asarray(pick_order[:take], dtype=np.int64)
    selected = pool[chosen].with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("rank"))
    mask = np.zeros(len(pool), dtype=bool)
    mask[chosen] = True
    pool = pool.with_columns(pl.Series("selected", mask))

    sizes = np.bincount(labels, minlength=k) if k else np.zeros(0, dtype=np.int64)
    selected_sizes = np.bincount(labels[chosen], minlength=k) if k else np.zeros(0, dtype=np.int64)
    report = DiversifyReport(
        rows_in=len(pairs),
        near_identical_dropped=len(dropped),
        pool=len(pool),
        rows_out=len(selected),
        n_clusters=k,
        cluster_sizes=tuple(int(s) for s in sizes),
        selected_cluster_sizes=tuple(int(s) for s in selected_sizes),
        pool_cluster_entropy_bits=cluster_entropy(labels),
        selected_cluster_entropy_bits=cluster_entropy(labels[chosen]),
        config=config,
    )
    return DiversifyResult(
        selected=selected, pool=pool, dropped=dropped, selected_embeddings=pool_vectors[chosen], report=report
    )


def _validate(pairs: pl.DataFrame, embeddings: np.ndarray) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(f"diversify(): pairs lack columns {missing}; it needs {list(REQUIRED_COLUMNS)}")
    clash = [c for c in ("cluster", "cluster_rank", "rank", "selected") if c in pairs.columns]
    if clash:
        raise ValueError(f"diversify(): pairs already have output column(s) {clash}; drop them first")
    if not isinstance(embeddings, np.ndarray) or embeddings.ndim != 2:
        raise ValueError("diversify(): embeddings must be a 2-D numpy array (rows aligned with pairs)")
    if embeddings.shape[0] != len(pairs):
        raise ValueError(f"diversify(): {len(pairs)} pairs but {embeddings.shape[0]} embedding rows")
    if not np.isfinite(embeddings).all():
        raise ValueError("diversify(): embeddings contain NaN or infinite values")
    if pairs["pair_id"].null_count() or pairs["pair_id"].n_unique() != len(pairs):
        raise ValueError("diversify(): pair_id must be unique and not null")
    if pairs["score"].null_count():
        raise ValueError(f"diversify(): {pairs['score'].null_count()} pairs have no score; score them first")


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


# --- near-identical instructions ----------------------------------------------------------------------------


def near_identical(vectors: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy removal of near-identical rows, in the given (priority) order.

    Row i is kept unless its cosine similarity to a row kept before it is >= ``threshold``. ``vectors`` must
    have unit-norm rows. Returns ``keep`` (bool), ``duplicate_of`` (index of the most similar kept row, -1 for
    kept rows) and ``similarity`` (that row's cosine, 0 for kept rows). Exact; cost O(n x kept x dim) in
    blocks whose similarity matrix holds at most ~32M values.
    """
    n, dim = vectors.shape
    keep = np.zeros(n, dtype=bool)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.zeros(n, dtype=np.float32)
    kept_rows = np.zeros((n, dim), dtype=np.float32)  # the kept vectors, packed at the front
    kept_index = np.zeros(n, dtype=np.int64)  # their row numbers
    n_kept = 0
    block = int(max(16, min(1024, _SIMILARITY_BLOCK_VALUES // max(n, 1))))
    for start in range(0, n, block):
        part = vectors[start : start + block]
        best_sim = np.full(len(part), -np.inf, dtype=np.float32)
        best_row = np.full(len(part), -1, dtype=np.int64)
        if n_kept:
            sims = part @ kept_rows[:n_kept].T
            arg = sims.argmax(axis=1)
            best_sim = sims[np.arange(len(part)), arg]
            best_row = kept_index[arg]
            del sims
        inner = part @ part.T  # against rows of this block kept earlier in the same block
        kept_here: list[int] = []
        for i in range(len(part)):
            if kept_here:
                sims_i = inner[i, kept_here]
                j = int(sims_i.argmax())
                if sims_i[j] > best_sim[i]:
                    best_sim[i], best_row[i] = sims_i[j], start + kept_here[j]
            if best_sim[i] >= threshold:
                duplicate_of[start + i], similarity[start + i] = best_row[i], best_sim[i]
            else:
                keep[start + i] = True
                kept_here.append(i)
        for i in kept_here:
            kept_rows[n_kept], kept_index[n_kept] = part[i], start + i
            n_kept += 1
    return keep, duplicate_of, similarity


# --- clustering ---------------------------------------------------------------------------------------------


def with_verb_features(
    vectors: np.ndarray, instructions: Sequence[str], weight: float, max_verbs: int
) -> np.ndarray:
    """``[vectors, weight * one_hot(first verb)] / sqrt(1 + weight**2)``: unit rows that also encode the verb.

    The ``max_verbs`` most common verbs (ties alphabetically) get a column each; all other verbs, and
    instructions without a verb, share the last column.
    """
    from xinst_assets.core.verbs import OTHER, instruction_verb

    verbs = [instruction_verb(text) or OTHER for text in instructions]
    counts = Counter(verbs)
    common = sorted(counts, key=lambda v: (-counts[v], v))[:max_verbs]
    column = {verb: i for i, verb in enumerate(common)}
    rest = len(common)
    one_hot = np.zeros((len(verbs), rest + 1), dtype=np.float32)
    one_hot[np.arange(len(verbs)), [column.get(v, rest) for v in verbs]] = weight
    return np.hstack([vectors, one_hot]) / np.float32(np.sqrt(1.0 + weight * weight))


def cluster(vectors: np.ndarray, k: int, config: DiversifyConfig = DiversifyConfig()) -> np.ndarray:
    """k-means labels (int64) for ``vectors``, renumbered by size: 0 = largest (ties by first member)."""
    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if n > config.minibatch_above:
        model = MiniBatchKMeans(
            n_clusters=k,
            batch_size=config.minibatch_size,
            n_init=config.n_init,
            random_state=config.seed,
            # k-means++ on a sample of 3 x batch (scikit-learn's default), never fewer than 3 points a centre.
            init_size=max(3 * config.minibatch_size, 3 * k),
        )
    else:
        model = KMeans(n_clusters=k, n_init=config.n_init, random_state=config.seed)
    with warnings.catch_warnings():
        # Fewer distinct points than k (possible with near_identical_cosine=None) is not an error here.
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        raw = model.fit_predict(vectors).astype(np.int64)
    return _renumber_by_size(raw, k)


def _renumber_by_size(labels: np.ndarray, k: int) -> np.ndarray:
    sizes = np.bincount(labels, minlength=k)
    first_seen = np.full(k, len(labels), dtype=np.int64)
    np.minimum.at(first_seen, labels, np.arange(len(labels)))
    order = np.lexsort((first_seen, -sizes))  # by size descending, then by first member
    new_id = np.empty(k, dtype=np.int64)
    new_id[order] = np.arange(k)
    return new_id[labels]


# --- diversity measures -------------------------------------------------------------------------------------


def cluster_entropy(labels: Iterable[Hashable] | np.ndarray) -> float:
    """Shannon entropy (bits) of the distribution of ``labels``; 0 for an empty or one-valued list.

    A selection spread evenly over k clusters has log2(k) bits; one dominated by a single cluster has close
    to 0. Works for any hashable labels (cluster ids, verbs).
    """
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        counts = np.bincount(labels - labels.min()) if labels.size else np.zeros(0)
    else:
        counts = np.fromiter(Counter(labels).values(), dtype=np.float64)
    counts = counts[counts > 0].astype(np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts / total
    return float(max(-(p * np.log2(p)).sum(), 0.0))


@dataclass(frozen=True)
class DiversityComparison:
    """Entropy of cluster and verb distributions: the diversified set vs random samples of the same size."""

    size: int
    draws: int
    cluster_entropy_diversified: float
    cluster_entropy_random: float  # mean over the random draws
    verb_entropy_diversified: float
    verb_entropy_random: float
    distinct_verbs_diversified: int
    distinct_verbs_random: float
    top_verbs_diversified: tuple[tuple[str, int], ...]
    top_verbs_random: tuple[tuple[str, int], ...]  # of the first random draw

    def as_metadata(self) -> dict[str, Any]:
        return {k: (list(map(list, v)) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def compare_with_random(
    pool: pl.DataFrame, seed: int = 0, draws: int = 5, top: int = 10, verbs: Sequence[str] | None = None
) -> DiversityComparison:
    """Compare the diversified selection with random samples of the same size drawn from the same pool.

    ``pool`` is :attr:`DiversifyResult.pool` (columns ``cluster``, ``selected``, ``instruction``). Verbs are
    the first instruction verb (:func:`xinst_assets.core.verbs.instruction_verb`, "other" when none), unless
    given aligned with the pool rows. Random samples are seeded; their entropies are averaged over ``draws``.
    """
    from xinst_assets.core.verbs import OTHER, instruction_verb

    for col in ("cluster", "selected", "instruction"):
        if col not in pool.columns:
            raise ValueError(f"compare_with_random(): pool lacks column {col!r} (pass DiversifyResult.pool)")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    labels = pool["cluster"].to_numpy()
    chosen = pool["selected"].to_numpy()
    if verbs is None:
        verbs = [instruction_verb(text) or OTHER for text in pool["instruction"].to_list()]
    elif len(verbs) != len(pool):
        raise ValueError(f"compare_with_random(): {len(verbs)} verbs for {len(pool)} pool rows")
    verb_array = np.asarray(verbs, dtype=object)
    size = int(chosen.sum())
    rng = np.random.default_rng(seed)
    cluster_h, verb_h, distinct, first_top = [], [], [], ()
    for draw in range(draws):
        sample = rng.choice(len(pool), size=size, replace=False) if size else np.zeros(0, dtype=np.int64)
        cluster_h.append(cluster_entropy(labels[sample]))
        verb_h.append(cluster_entropy(verb_array[sample].tolist()))
        distinct.append(len(set(verb_array[sample].tolist())))
        if draw == 0:
            first_top = tuple(Counter(verb_array[sample].tolist()).most_common(top))
    selected_verbs = verb_array[chosen].tolist()
    return DiversityComparison(
        size=size,
        draws=draws,
        cluster_entropy_diversified=cluster_entropy(labels[chosen]),
        cluster_entropy_random=float(np.mean(cluster_h)),
        verb_entropy_diversified=cluster_entropy(selected_verbs),
        verb_entropy_random=float(np.mean(verb_h)),
        distinct_verbs_diversified=len(set(selected_verbs)),
        distinct_verbs_random=float(np.mean(distinct)),
        top_verbs_diversified=tuple(Counter(selected_verbs).most_common(top)),
        top_verbs_random=first_top,
    )
