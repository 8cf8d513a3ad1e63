"""Near-duplicate accuracy on the labelled groups, and whether the clusters depend on the arrival order.

    .venv/bin/python bench/bench_dedup_accuracy.py                          # every language with a file
    .venv/bin/python bench/bench_dedup_accuracy.py --orders 10 --baseline 70fec61

For each ``xinst_assets_tests/data/filter_eval/near_duplicates/<code>.jsonl`` (groups of an original, its near
copies and hard negatives; definitions of the scores in ``xinst_assets/core/dedup_eval.py``):

* **xinst**: near-dedup's own steps, as the asset runs them (``near_dedup_language``: export from the warehouse,
  cluster, write ``near_dedup_state`` / ``filtered_documents`` / ``filter_rejections``), on a warehouse file
  holding the language's documents as dbt's screening leaves its survivors (``xinst_assets_tests/dedup_tables.py``;
  the language-ID and quality filters are left out, so that every labelled document reaches dedup). First a
  full run over every document (its scores), then ``--orders`` random arrival orders, each split at random
  into ``--batches`` nightly refreshes: "identical" counts the orders whose final tables equal the full run's.
* **baseline** (``--baseline REV``): ``xinst_assets/core/dedup.py`` of an earlier commit, loaded from git, run
  with its own in-memory ``deduplicate`` (which decided as its asset did, tested so at that commit), in the
  same arrival orders and batches (each batch a refresh against the representatives kept before, documents
  first seen in arrival order). Its scores are the worst over the orders, and "identical" counts the orders
  whose clusters equal those of its full run.
* ``--synthetic N``: a last row of N generated groups in the same format, harder than the labelled set
  (``synthetic_labelled_set`` in ``xinst_assets_tests/dedup_cases.py``: short articles whose copies each
  replace one to three sentences of their own, 0.65-0.84 similar to the original and 0.40-0.71 to each
  other; hard negatives of the same template and intro at 0.31-0.49), run as Swahili (Latin script).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xinst_assets.core.dedup_eval import LabelledDocument, load_near_duplicates, score_near_duplicates  # noqa: E402
from xinst_assets.languages import load_registry  # noqa: E402
from xinst_assets_tests.dedup_cases import synthetic_labelled_set  # noqa: E402
from xinst_assets_tests.dedup_tables import labelled_accuracy  # noqa: E402

DATA = ROOT / "xinst_assets_tests" / "data" / "filter_eval" / "near_duplicates"
TARGET_RECALL = 0.98


def _load_baseline(rev: str):
    """core/dedup.py as it was at ``rev``, as a module of its own (its imports resolve in today's package)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:xinst_assets/core/dedup.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="dedup-baseline-")) / "dedup_baseline.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("dedup_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def _baseline_clusters(module, docs: list[LabelledDocument], script: str | None, batches: list[list[int]]) -> dict:
    """The earlier code's cluster of each labelled id, fed batch by batch (documents first seen in order)."""
    previous, rep_of = [], {}
    for night, batch in enumerate(batches):
        candidates = [module.DedupCandidate(docs[i].id, docs[i].text, seen_at=f"2024-01-{night + 1:02d}T00:00:00")
                      for i in batch]
        outcome = module.deduplicate(candidates, script, previous=previous)
        for d in outcome.decisions:
            rep_of[d.doc_id] = d.doc_id if d.keep else d.duplicate_of
        previous = previous + outcome.new_representatives
    return rep_of


def _baseline(module, docs, script, orders: int, batches: int, seed: int):
    """(worst score over the orders, orders identical to its full run)."""
    full = _baseline_clusters(module, docs, script, [list(range(len(docs)))])
    scores = [score_near_duplicates(docs, full)]
    identical = 0

    def clusters(rep_of: dict) -> list:
        return sorted(sorted(d for d in rep_of if rep_of[d] == r) for r in set(rep_of.values()))

    for order, cuts in _orders(len(docs), orders, batches, seed):
        split = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)])]
        rep_of = _baseline_clusters(module, docs, script, split)
        scores.append(score_near_duplicates(docs, rep_of))
        identical += clusters(rep_of) == clusters(full)
    worst = max(scores, key=lambda s: (s.groups_split, s.negatives_merged, -s.recall))
    return worst, identical


def _orders(count: int, orders: int, batches: int, seed: int):
    rng = random.Random(seed)
    for _ in range(orders):
        order = list(range(count))
        rng.shuffle(order)
        yield order, sorted(rng.sample(range(1, count), min(batches, count) - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", default="", help="codes separated by commas (default: every file)")
    parser.add_argument("--orders", type=int, default=5, help="shuffled arrival orders per language")
    parser.add_argument("--batches", type=int, default=4, help="refreshes each order is split into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", default="", help="a git revision whose core/dedup.py to compare with")
    parser.add_argument("--synthetic", type=int, default=0, help="generated groups to add as a last row")
    args = parser.parse_args()
    registry = load_registry()
    codes = [c for c in args.languages.split(",") if c] or sorted(p.stem for p in DATA.glob("*.jsonl"))
    if not codes and not args.synthetic:
        raise SystemExit(f"no labelled near-duplicate files under {DATA}")
    sets = [(code, registry.get(code), load_near_duplicates(DATA / f"{code}.jsonl")) for code in codes]
    if args.synthetic:
        sets.append(("synthetic", registry.get("sw"), synthetic_labelled_set(args.seed, args.synthetic)))
    baseline = _load_baseline(args.baseline) if args.baseline else None
    header = ["lang", "groups", "copies", "negatives", "recall", "neg merged", "split", "groups merged",
              "identical orders", "exact checks", "s"]
    if baseline:
        header += ["base recall", "base neg merged", "base split", "base identical"]
    rows, totals = [], {"copies": 0, "found": 0, "merged": 0, "split": 0, "groups": 0, "cross": 0, "orders": 0,
                        "identical": 0}
    base_totals = {"found": 0, "merged": 0, "split": 0, "identical": 0}
    for code, lang, docs in sets:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"dedup-accuracy-{code}-") as folder:
            run = labelled_accuracy(docs, lang, Path(folder), args.orders, args.batches, args.seed)
        seconds = time.perf_counter() - started
        s = run.score
        row = [code, s.groups, s.near_copies, s.hard_negatives, f"{s.recall:.3f}", s.negatives_merged,
               s.groups_split, s.groups_merged, f"{run.identical_orders}/{run.orders}", run.exact_checks,
               f"{seconds:.1f}"]
        labelled = code != "synthetic"  # (the totals and targets are the labelled set's)
        for key, value in (("copies", s.near_copies), ("found", s.copies_with_original), ("merged", s.negatives_merged),
                           ("split", s.groups_split), ("groups", s.groups), ("cross", s.groups_merged),
                           ("orders", run.orders), ("identical", run.identical_orders)):
            totals[key] += value if labelled else 0
        if baseline:
            worst, identical = _baseline(baseline, docs, lang.script, args.orders, args.batches, args.seed)
            row += [f"| {worst.recall:.3f}", worst.negatives_merged, worst.groups_split, f"{identical}/{args.orders}"]
            if labelled:
                base_totals["found"] += worst.copies_with_original
                base_totals["merged"] += worst.negatives_merged
                base_totals["split"] += worst.groups_split
                base_totals["identical"] += identical
        rows.append(row)
        print(" ".join(str(c) for c in row), flush=True)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c).lstrip("| ") for c in row) + " |")
    recall = totals["found"] / totals["copies"] if totals["copies"] else 1.0
    print(f"\nlabelled set: {totals['groups']} groups, {totals['copies']} near copies; recall {recall:.3f} "
          f"(target >= {TARGET_RECALL}: {'met' if recall >= TARGET_RECALL else 'MISSED'}), "
          f"hard negatives merged {totals['merged']} (target 0), groups split {totals['split']} (target 0), "
          f"groups merged {totals['cross']}, orders identical to the full run {totals['identical']}/{totals['orders']}")
    if baseline:
        base_recall = base_totals["found"] / totals["copies"] if totals["copies"] else 1.0
        print(f"baseline {args.baseline} (worst order per language): recall {base_recall:.3f}, hard negatives merged "
              f"{base_totals['merged']}, groups split {base_totals['split']}, orders identical to its full run "
              f"{base_totals['identical']}/{totals['orders']}")


if __name__ == "__main__":
    main()
