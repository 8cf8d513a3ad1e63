"""The same nightly refresh run by two (or more) versions of the code, side by side, on copies of one home.

    .venv/bin/python bench/bench_nightly.py --docs-per-language 100000 --keep      # prints the kept folder
    .venv/bin/python bench/bench_refresh_compare.py --kept KEPT_FOLDER --tree base=OTHER_CHECKOUT --tree new=.

``bench_nightly.py --keep`` leaves its embedded home after the first run and one refresh. This script writes
one more night's shard per language (``--new-share`` of the first run's size, a seed of its own) beside the
shards that home ingested, then, for each ``--tree`` in turn, copies the home
and runs the real ``xinst materialize`` over the ten languages with that checkout's ``xinst_assets`` first on
``PYTHONPATH``: every version refreshes exactly the same state with exactly the same new documents. It prints
each refresh's wall time and where it went (per stage, from the runs' Dagster event logs), then removes the
copies and the extra shard. The copies need the home's size again in free disk space, one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from bench_nightly import link_or_copy, materialize, print_profile, step_profile
from corpus import build_corpus

NIGHT_SHARD = "nightly-compare.parquet"
COMPARE_SEED = 777


def _tree(value: str) -> tuple[str, Path]:
    name, _, path = value.partition("=")
    if not name or not path or not (Path(path) / "xinst_assets").is_dir():
        raise argparse.ArgumentTypeError(f"--tree wants NAME=CHECKOUT (a folder with xinst_assets/), got {value!r}")
    return name, Path(path).resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kept", type=Path, required=True, help="the folder bench_nightly.py --keep printed")
    parser.add_argument("--tree", type=_tree, action="append", required=True, help="NAME=CHECKOUT, in run order")
    parser.add_argument("--new-share", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    store = args.kept / "embedded"
    raw = store / "raw"
    languages = sorted(p.name for p in raw.iterdir() if p.is_dir()) if raw.is_dir() else []
    first_shards = sorted((raw / languages[0]).glob("part-*.parquet")) if languages else []
    if not first_shards:
        raise SystemExit(f"{args.kept} holds no kept bench_nightly run (expected embedded/raw/<lang>/part-*.parquet)")
    per_language = sum(pq.ParquetFile(p).metadata.num_rows for p in first_shards)
    new_per_language = max(1, round(per_language * args.new_share))
    scratch = Path(tempfile.mkdtemp(prefix="xinst-refresh-compare-", dir=args.kept))
    results: dict[str, float] = {}
    try:
        corpus = build_corpus(new_per_language * len(languages), seed=COMPARE_SEED, out=scratch / "corpus")
        for lang in languages:
            link_or_copy(corpus / lang / "part-00000.parquet", raw / lang / NIGHT_SHARD)
        print(f"refresh of {len(languages)} languages, +{new_per_language:,} documents each, on copies of "
              f"{store / 'home'}", flush=True)
        for name, tree in args.tree:
            home = scratch / name / "home"
            home.parent.mkdir(parents=True)
            subprocess.run(["cp", "-a", str(store / "home"), str(home)], check=True)
            os.environ["PYTHONPATH"] = str(tree)  # inherited by the xinst command
            since = time.time()
            wall = materialize(home, raw, languages, args.workers, scratch / f"{name}.log")
            print_profile(f"{name} refresh", wall, step_profile(home / "dagster_home", since))
            results[name] = round(wall, 1)
            shutil.rmtree(home.parent)
    finally:
        for lang in languages:
            (raw / lang / NIGHT_SHARD).unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"new_per_language": new_per_language, "refresh_s": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
