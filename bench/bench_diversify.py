"""Stage 5 at scale on CPU: embedding rate, near-identical pass, k-means and selection for 100k instructions.

    .venv/bin/python bench/bench_diversify.py [--n 100000] [--embed-n 2000] [--budget 32000] [--seed 0]

MiniLM embeds about 135 sentences/s per thread, so embedding 100k instructions takes 10+ minutes here. The
benchmark therefore embeds ``--embed-n`` generated instructions for real (measured rate, extrapolated to
``--n``), and builds the other ``n - embed-n`` vectors from the real ones: each is a real vector plus Gaussian
noise (cosine about 0.86 to its source, about 0.74 between two siblings), with its source's instruction text,
so the pool keeps the real cluster and verb structure without collapsing into near-duplicates. The
near-identical pass, k-means and the round-robin selection then run on the full ``n`` (measured).
Every line of the output says whether a number was measured or extrapolated.

Instructions come from templates x topics with a long tail like X-Instruction's: about 45% news writing
("Write a news article about <event> in <place>."), then summarize / explain / create / translate /
questions / others.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time

import numpy as np
import polars as pl
import psutil

from xinst_assets.core.diversify import (
    DiversifyConfig,
    cluster,
    compare_with_random,
    diversify,
    near_identical,
)
from xinst_assets.core.verbs import verb_counts
from xinst_assets.embedding import default_embedder

EVENTS = [
    "floods",
    "an election",
    "a football final",
    "rising rice prices",
    "a heatwave",
    "a new railway line",
    "a teachers' strike",
    "a music festival",
    "a bus crash",
    "a solar power plant",
    "a cholera outbreak",
    "a new airport",
    "a fishing ban",
    "a cyclone",
    "a tech conference",
    "fuel shortages",
    "a bridge collapse",
    "a marathon",
    "a film premiere",
    "a hospital opening",
    "a drought",
    "a court ruling",
    "a coffee harvest",
    "a port expansion",
    "a school reform",
    "a fire at a market",
    "a new national park",
    "a bank merger",
]
PLACES = [
    "Nairobi",
    "Bangkok",
    "Hanoi",
    "Jakarta",
    "Istanbul",
    "Helsinki",
    "Dhaka",
    "Chennai",
    "Karachi",
    "Dar es Salaam",
    "Mumbai",
    "Colombo",
    "Mombasa",
    "Chiang Mai",
    "Da Nang",
    "Surabaya",
    "Ankara",
    "Tampere",
    "Chittagong",
    "Madurai",
    "Lahore",
    "Zanzibar",
    "Delhi",
    "Kandy",
    "Medan",
    "Izmir",
    "Hue",
    "Arusha",
]
TOPICS = [
    "climate change",
    "public health",
    "migration",
    "ancient history",
    "renewable energy",
    "online privacy",
    "urban farming",
    "traditional music",
    "space exploration",
    "road safety",
    "child nutrition",
    "small businesses",
    "water supply",
    "mobile banking",
    "wildlife protection",
    "local elections",
    "tourism",
    "air pollution",
    "digital education",
    "womens football",
    "street food",
    "housing prices",
]
CONCEPTS = [
    "how a vaccine works",
    "photosynthesis",
    "inflation",
    "how credit cards work",
    "the water cycle",
    "machine learning",
    "how elections are counted",
    "compound interest",
    "plate tectonics",
    "monsoons",
    "how solar panels work",
    "the immune system",
    "supply and demand",
    "how the internet works",
]
THINGS = [
    "recipe",
    "workout plan",
    "study schedule",
    "budget",
    "travel itinerary",
    "shopping list",
    "lesson plan",
    "marketing slogan",
    "short story",
    "poem",
    "speech",
    "quiz",
]
AUDIENCES = [
    "teenagers",
    "new parents",
    "farmers",
    "university students",
    "small shop owners",
    "tourists",
    "retired people",
    "nurses",
    "teachers",
    "office workers",
]
LANGUAGES = [
    "Swahili",
    "Thai",
    "Finnish",
    "Urdu",
    "Tamil",
    "Vietnamese",
    "Turkish",
    "Hindi",
    "Bengali",
    "Indonesian",
]

TEMPLATES: list[tuple[float, str]] = [  # (weight, template): the long tail
    (0.30, "Write a news article about {event} in {place}."),
    (0.08, "Write a headline for a news story about {event} in {place}."),
    (0.07, "Write a short news report on {event} in {place}."),
    (0.07, "Summarize the main points of a report on {topic}."),
    (0.03, "Summarize this article about {event} in {place}."),
    (0.06, "Explain {concept}."),
    (0.03, "Explain {concept} to {audience}."),
    (0.05, "Create a {thing} for {audience}."),
    (0.04, "Translate the following paragraph about {topic} into {language}."),
    (0.05, "What are the main causes of {topic} problems in {place}?"),
    (0.04, "How can {audience} learn about {topic}?"),
    (0.03, "Give me some tips about {topic} for {audience}."),
    (0.03, "List the benefits of {topic} for {audience}."),
    (0.03, "Describe {event} in {place} for {audience}."),
    (0.03, "Write a blog post about {topic} for {audience}."),
    (0.02, "Compare {topic} in {place} and {place2}."),
    (0.02, "Suggest a {thing} about {topic}."),
    (0.02, "Write a poem about {topic}."),
]


def generate_instructions(n: int, seed: int) -> list[str]:
    """``n`` English instructions from the templates, drawn with the template weights (seeded)."""
    rng = random.Random(seed)
    weights = [w for w, _ in TEMPLATES]
    out = []
    for template in rng.choices([t for _, t in TEMPLATES], weights=weights, k=n):
        out.append(
            template.format(
                event=rng.choice(EVENTS),
                place=rng.choice(PLACES),
                place2=rng.choice(PLACES),
                topic=rng.choice(TOPICS),
                concept=rng.choice(CONCEPTS),
                thing=rng.choice(THINGS),
                audience=rng.choice(AUDIENCES),
                language=rng.choice(LANGUAGES),
            )
        )
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="pool size for clustering and selection")
    parser.add_argument("--embed-n", type=int, default=2_000, help="instructions embedded for real")
    parser.add_argument(
        "--budget", type=int, default=32_000, help="pairs selected (X-Instruction: 32k per language)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 0 < args.embed_n <= args.n:
        parser.error("--embed-n must be within [1, --n]")

    import torch

    rows: list[tuple[str, str, str]] = []  # (what, value, measured / extrapolated / input)

    def note(what: str, value: str, kind: str) -> None:
        rows.append((what, value, kind))
        print(f"  {what:<48} {value:>18}   {kind}", flush=True)

    print(
        f"stage-5 benchmark: n={args.n:,} embed_n={args.embed_n:,} budget={args.budget:,} "
        f"torch threads={torch.get_num_threads()} cores={psutil.cpu_count()}"
    )
    note("RSS at start", f"{rss_mb():,.0f} MB", "measured")

    # --- embedding (real) -------------------------------------------------------------------------------
    texts = generate_instructions(args.embed_n, args.seed)
    started = time.perf_counter()
    embedder = default_embedder()
    note("MiniLM load", f"{time.perf_counter() - started:.1f} s", "measured")
    embedder.embed(texts[:32])  # warm-up
    started = time.perf_counter()
    real = embedder.embed(texts)
    seconds = time.perf_counter() - started
    rate = len(texts) / seconds
    note(f"embed {len(texts):,} instructions", f"{seconds:.1f} s", "measured")
    note("embedding rate", f"{rate:,.0f} texts/s", "measured")
    note(f"embed {args.n:,} instructions", f"{args.n / rate / 60:.1f} min", "extrapolated")
    note("peak RSS after embedding", f"{peak_rss_mb():,.0f} MB", "measured")

    # --- diversity on the real subset -----------------------------------------------------------------
    rng = np.random.default_rng(args.seed)
    sub_budget = max(2, round(args.embed_n * args.budget / args.n))
    real_pairs = pl.DataFrame(
        {
            "pair_id": [f"r{i:07d}" for i in range(len(texts))],
            "instruction": texts,
            "response": "",
            "score": np.round(rng.uniform(1.0, 3.0, len(texts)), 2),
            "label": 3,
            "refined": False,
        }
    )
    for name, weight in (("plain", None), ("verb_weight=1", 1.0)):
        result = diversify(
            real_pairs, real, DiversifyConfig(budget=sub_budget, seed=args.seed, verb_weight=weight)
        )
        cmp = compare_with_random(result.pool, seed=args.seed)
        k = result.report.n_clusters
        note(
            f"real {args.embed_n:,}, {name}: k / pool / selected",
            f"{k} / {result.report.pool:,} / {cmp.size:,}",
            "measured",
        )
        note(
            "  cluster entropy diversified vs random (bits)",
            f"{cmp.cluster_entropy_diversified:.2f} vs {cmp.cluster_entropy_random:.2f}",
            "measured",
        )
        note(
            "  verb entropy diversified vs random (bits)",
            f"{cmp.verb_entropy_diversified:.2f} vs {cmp.verb_entropy_random:.2f}",
            "measured",
        )
        top = ", ".join(f"{v} {c}" for v, c in cmp.top_verbs_diversified[:4])
        print(f"    top verbs diversified: {top}")
        top = ", ".join(f"{v} {c}" for v, c in cmp.top_verbs_random[:4])
        print(f"    top verbs random:      {top}")
    del embedder
    gc.collect()

    # --- full pool: real vectors + synthesised neighbours --------------------------------------------
    dim = real.shape[1]
    source = rng.integers(0, len(real), args.n - len(real))
    # noise of norm ~0.6 (sigma 0.6/sqrt(dim)): cosine ~0.86 to the source vector, ~0.74 between siblings
    extra = real[source] + rng.normal(scale=0.6 / np.sqrt(dim), size=(len(source), dim)).astype(np.float32)
    vectors = np.vstack([real, extra]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    del extra
    all_texts = texts + [texts[j] for j in source]
    pairs = pl.DataFrame(
        {
            "pair_id": [f"p{i:07d}" for i in range(args.n)],
            "instruction": all_texts,
            "response": "",
            "score": np.round(rng.uniform(1.0, 3.0, args.n), 2),
            "label": 3,
            "refined": False,
        }
    )
    print(f"full pool: {len(real):,} real + {len(source):,} synthesised vectors (real + noise)")
    config = DiversifyConfig(budget=args.budget, seed=args.seed)
    k = config.clusters_for(args.n)

    order = np.asarray(pairs.with_row_index("r").sort(["score", "pair_id"], descending=[True, False])["r"])
    started = time.perf_counter()
    keep, _, _ = near_identical(vectors[order], config.near_identical_cosine)
    note(
        f"near-identical pass on {args.n:,} (cos >= {config.near_identical_cosine})",
        f"{time.perf_counter() - started:.1f} s",
        "measured",
    )
    note("  dropped as near-identical", f"{int((~keep).sum()):,}", "measured")
    note("peak RSS after near-identical pass", f"{peak_rss_mb():,.0f} MB", "measured")

    started = time.perf_counter()
    cluster(vectors[order][keep], k, config)
    note(
        f"MiniBatchKMeans k={k} on {int(keep.sum()):,}", f"{time.perf_counter() - started:.1f} s", "measured"
    )

    started = time.perf_counter()
    result = diversify(pairs, vectors, config)
    total = time.perf_counter() - started
    note("diversify() end to end (dedup + k-means + select)", f"{total:.1f} s", "measured")
    note("  selected", f"{result.report.rows_out:,} of {result.report.pool:,}", "measured")
    note("peak RSS after diversify", f"{peak_rss_mb():,.0f} MB", "measured")

    started = time.perf_counter()
    cmp = compare_with_random(result.pool, seed=args.seed)
    note(
        f"compare_with_random (verbs of {args.n:,} + 5 draws)",
        f"{time.perf_counter() - started:.1f} s",
        "measured",
    )
    note(
        "cluster entropy diversified vs random (bits)",
        f"{cmp.cluster_entropy_diversified:.2f} vs {cmp.cluster_entropy_random:.2f}",
        "measured",
    )
    note(
        "verb entropy diversified vs random (bits)",
        f"{cmp.verb_entropy_diversified:.2f} vs {cmp.verb_entropy_random:.2f}",
        "measured",
    )
    pool_verbs = verb_counts(all_texts).most_common(5)
    print("    pool top verbs: " + ", ".join(f"{v} {c:,}" for v, c in pool_verbs))
    note(
        f"embedding + diversify for {args.n:,}", f"{args.n / rate / 60 + total / 60:.1f} min", "extrapolated"
    )

    print("\n| step | value | kind |\n|---|---:|---|")
    for what, value, kind in rows:
        print(f"| {what.strip()} | {value} | {kind} |")


if __name__ == "__main__":
    main()
