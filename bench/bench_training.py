"""Training throughput with and without packing on the same data; model FLOPs utilisation on a GPU.

    .venv/bin/python bench/bench_training.py [--examples 256] [--max-length 512] [--batch-size 8] [--threads 1]
    .venv/bin/python bench/bench_training.py --arch qwen2-0.5b --max-length 2048 --batch-size 8 \
        --max-steps 30 [--peak-tflops 989]      # on a CUDA GPU: tokens/s and MFU in bf16

Builds a tiny Llama (hidden 64, 2 layers) and a set of (instruction, response) rows whose response lengths
spread like web texts (short snippets to long articles, cut from the sample seed pairs), trains one epoch
with each setting through the real entry point (``xinst_assets.training.train``) and prints real
(non-padding) tokens per second and wall time. Padding is what packing removes, so the gain grows with the
spread of lengths; the numbers are for this machine and this model size only.

``--arch`` instead builds a randomly initialised model with the shape of a published checkpoint (no download:
the shape numbers are written below) and the tiny tokenizer, trains ``--max-steps`` packed steps (bf16 on a GPU
that supports it) and reports model FLOPs utilisation: achieved training FLOP/s over the device's dense bf16
peak, counting 6 FLOPs per parameter per token plus the attention score and value products (the accounting of
the PaLM paper's appendix). The first steps (warm-up, allocator growth) are included, so run enough steps.
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

# Shapes of published checkpoints (from their config.json), for randomly initialised throughput runs.
ARCHITECTURES: dict[str, dict] = {
    "qwen2-0.5b": {
        "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
    },
    "llama-1b": {  # Llama 3.2 1B
        "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True,
    },
}
# Dense bf16 peak TFLOP/s by device name (vendor data sheets; without sparsity).
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}

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


def build_architecture(name: str, tokenizer_dir: Path, out: Path, max_length: int) -> tuple[Path, dict]:
    """A random-init model of the named shape saved with the tokenizer from ``tokenizer_dir``; and its shape."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    shape = dict(ARCHITECTURES[name])
    model_type = shape.pop("model_type")
    config = AutoConfig.for_model(model_type, max_position_embeddings=max(max_length, 4096), **shape)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    return out, {"model_type": model_type, "params": n_params, **shape}


def flops_per_token(shape: dict, seq_len: int) -> float:
    """Training FLOPs per token: 6 per parameter (forward + backward) plus attention's QK^T and AV products.

    Parameters count once each (tied embeddings are one matrix, used as the output layer); the embedding lookup
    itself costs no FLOPs, but the output layer does, so counting the tied matrix once is right.
    """
    attention = 6 * 2 * shape["num_hidden_layers"] * shape["hidden_size"] * seq_len  # causal: half of 12*L*H*T
    return 6.0 * shape["params"] + attention


def device_peak_tflops(override: float | None) -> tuple[float | None, str]:
    """The dense bf16 peak of the current CUDA device (or ``override``) and the device's name."""
    import torch

    if not torch.cuda.is_available():
        return override, "cpu"
    name = torch.cuda.get_device_name(0)
    if override is not None:
        return override, name
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops, name
    return None, name


def run(base: Path, data: Path, out: Path, packing: bool, args: argparse.Namespace) -> dict:
    config = TrainConfig(
        base_model=str(base),
        output_dir=str(out),
        data_files=(str(data),),
        packing=packing,
        max_length=args.max_length,
        num_epochs=1.0,
        max_steps=args.max_steps,
        per_device_batch_size=args.batch_size,
        gradient_checkpointing=args.gradient_checkpointing,
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
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), help="measure MFU on a model of this shape")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak (default: by GPU name)")
    args = parser.parse_args()
    if args.arch:
        measure_mfu(args)
        return
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, base = write_data_and_tiny_model(root, args, "base")
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


def write_data_and_tiny_model(root: Path, args: argparse.Namespace, model_dir: str) -> tuple[Path, Path]:
    """The benchmark's training rows as JSONL under ``root`` and a tiny model (tokenizer trained on them)."""
    rows = make_rows(args.examples, args.seed)
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return data, build_tiny_model(root / model_dir, [r["instruction"] + " " + r["response"] for r in rows])


def measure_mfu(args: argparse.Namespace) -> None:
    """Packed training of a real-shape model: tokens/s and model FLOPs utilisation."""
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, tiny = write_data_and_tiny_model(root, args, "tiny")
        base, shape = build_architecture(args.arch, tiny, root / "base", args.max_length)
        result = run(base, data, root / "out", True, args)
    peak, device = device_peak_tflops(args.peak_tflops)
    achieved = result["tokens_per_s"] * flops_per_token(shape, args.max_length) / 1e12
    print(
        f"{args.arch} ({shape['params'] / 1e6:,.0f}M parameters), device={device}, packed, "
        f"max_length={args.max_length}, batch={args.batch_size}, steps={result['steps']}"
    )
    print(f"{result['tokens_per_s']:,.0f} tokens/s, {achieved:,.2f} TFLOP/s achieved (train {result['train_runtime_s']:.1f} s)")
    if peak:
        print(f"MFU {achieved / peak:.1%} of {peak:,.0f} TFLOP/s dense bf16 peak")
    else:
        print("MFU: unknown device peak; pass --peak-tflops")


if __name__ == "__main__":
    main()
