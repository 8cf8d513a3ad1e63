"""Training throughput with and without packing, on the same data, on CPU with a tiny model.

    .venv/bin/python bench/bench_training.py [--examples 256] [--max-length 512] [--batch-size 8] [--threads 1]

Builds a tiny Llama (hidden 64, 2 layers) and a set of (instruction, response) rows whose response lengths
spread like web texts (short snippets to long articles, cut from the sample seed pairs), trains one epoch
with each setting through the real entry point (``xinst_assets.training.train``) and prints real
(non-padding) tokens per second and wall time. Padding is what packing removes, so the gain grows with the
spread of lengths; the numbers are for this machine and this model size only.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from xinst_assets.core.tiny_model import build_tiny_model
from xinst_assets.training import TrainConfig, train

SAMPLE = Path(__file__).resolve().parents[1] / "xinst_assets" / "data" / "sample" / "seed_pairs"


def make_rows(n: int, seed: int) -> list[dict]:
    """``n`` rows: sample instructions with responses cut to lengths drawn log-uniformly in [40, 2000] chars."""
    rng = random.Random(seed)
    sources = []
    for path in sorted(SAMPLE.glob("*.jsonl")):
        lang = {"id": "Indonesian", "vi": "Vietnamese"}.get(path.stem, path.stem)
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                sources.append((json.loads(line), lang))
    rows = []
    for _ in range(n):
        row, lang = rng.choice(sources)
        text = row["response"]
        while len(text) < 2000:
            text += " " + rng.choice(sources)[0]["response"]
        length = round(40 * (2000 / 40) ** rng.random())
        rows.append(
            {
                "instruction": row["instruction"],
                "response": text[:length],
                "lang_name": lang,
                "refined": False,
            }
        )
    return rows


def run(base: Path, data: Path, out: Path, packing: bool, args: argparse.Namespace) -> dict:
    config = TrainConfig(
        base_model=str(base),
        output_dir=str(out),
        data_files=(str(data),),
        packing=packing,
        max_length=args.max_length,
        num_epochs=1.0,
        per_device_batch_size=args.batch_size,
        learning_rate=1e-4,
        save_steps=10**9,  # no checkpoint during the measurement
        logging_steps=10**9,
        progress_every_s=3600,
        resume=False,
    )
    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    return {
        "packing": packing,
        "steps": result.global_step,
        "tokens_per_s": result.tokens_per_s,
        "train_runtime_s": result.train_runtime_s,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    # One thread by default: on a shared 2-core machine two OpenMP threads spin against other processes and
    # the timings swing by 3-5x between runs; one thread gives repeatable numbers.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = make_rows(args.examples, args.seed)
        data = root / "train.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        base = build_tiny_model(root / "base", [r["instruction"] + " " + r["response"] for r in rows])
        results = [run(base, data, root / f"out-{p}", p, args) for p in (False, True)]
    for r in results:
        print(
            f"packing={r['packing']!s:5}  steps={r['steps']:4d}  {r['tokens_per_s']:10,.0f} real tokens/s  "
            f"train {r['train_runtime_s']:.1f} s  (wall {r['wall_s']:.1f} s)"
        )
    print(
        f"threads={args.threads}, examples={args.examples}, max_length={args.max_length}, batch={args.batch_size}"
    )
    ratio = results[1]["tokens_per_s"] / results[0]["tokens_per_s"]
    print(
        f"packing / no packing: {ratio:.2f}x tokens/s, {results[0]['train_runtime_s'] / results[1]['train_runtime_s']:.2f}x less time"
    )


if __name__ == "__main__":
    main()
