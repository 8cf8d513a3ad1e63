"""The ``xinst`` command: run the pipeline on the sample, materialize a language, open the UI."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import multiprocessing
import subprocess
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from xinst_assets.settings import default_home


def _prepare_environment(home: Path) -> Path:
    """Point xinst and Dagster at ``home``; return the Dagster instance folder, made ready for runs (created
    and migrated once under its lock, given the local instance settings if it has none, and cleared of runs
    whose process died)."""
    from xinst_assets.local_instance import prepare_local_instance

    os.environ["XINST_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_HOME", str(home / "dagster_home"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Dagster then hands a run's planned materializations, and each step's materializations of its partitions,
    # to the event log as batches, which the local instance's storage writes in one transaction each.
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    report = prepare_local_instance(dagster_home)
    if report.wrote_config:
        print(f"xinst: wrote the local Dagster instance settings: {dagster_home / 'dagster.yaml'}", flush=True)
    for line in report.lines():
        print(f"xinst: {line}", flush=True)
    return dagster_home


# The demo grades with the real default, level 3, using the curator checkpoint tuned on the seed judgements.
# What it still relaxes (README, "What the demo's model is"): the tuned model trains for 40 steps on short
# sequences and evaluation answers are short, because the tiny model is trained from scratch on a CPU.
DEMO_DATA_RUN_CONFIG: dict = {"ops": {}}
DEMO_TUNING_RUN_CONFIG = {
    "ops": {
        "tuned_checkpoint": {"config": {"max_steps": 40, "batch_size": 8, "max_length": 256}},
        "evaluation": {"config": {"max_new_tokens": 48}},
    }
}


# Self-training rounds in the demo train each round's generator briefly (the shared one trains for 120 steps).
DEMO_SELF_TRAINING_STEPS = 30

CURATED_ASSETS = ["seed_pairs", "parallel_pairs", "eval_questions"]
# Unpartitioned models every language uses: materialized once before the languages' runs (which reuse them).
SHARED_MODEL_ASSETS = ["instruction_generator", "curator"]
EVENT_BATCH_SIZE = 1000  # events Dagster buffers before writing a batch (bounds its memory)


def _share_cores(workers: int) -> None:
    """Give each of ``workers`` processes its share of the cores (torch would otherwise take them all in each)."""
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    # torch reads this when it is first imported (by a model stage); a run of data stages never imports it.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _import_pipeline(workers: int) -> None:
    """A worker's start: its share of the cores, and the imports every run needs (seconds, once per worker)."""
    _share_cores(workers)
    import xinst_assets.definitions  # noqa: F401  (Dagster, dbt and the stages)


@lru_cache(maxsize=1)
def _definitions():
    """The definitions, built once per process (the environment does not change within a command)."""
    from xinst_assets.config import XinstConfig
    from xinst_assets.definitions import build_definitions

    return build_definitions(XinstConfig.from_env())


@contextlib.contextmanager
def _worker_pool(workers: int) -> Iterator[Executor]:
    """``workers`` processes that run language partitions, started at once (each imports the pipeline)."""
    with ProcessPoolExecutor(max_workers=max(workers, 1), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_import_pipeline, initargs=(workers,)) as pool:
        started = [pool.submit(time.monotonic) for _ in range(max(workers, 1))]  # makes the pool start them
        for future in started:
            future.result()
        yield pool


def _run_one(code: str, selection: list[str] | None, run_config: dict | None) -> tuple[str, bool, float, str]:
    """Materialize the pipeline job (or ``selection``) for one language; runs in a worker process."""
    import dagster as dg

    started = time.monotonic()
    defs = _definitions()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("xinst_pipeline").execute_in_process(
            partition_key=code,
            instance=instance,
            asset_selection=[dg.AssetKey(k) for k in selection] if selection else None,
            run_config=run_config or {},
            raise_on_error=False,
        )
    return code, result.success, time.monotonic() - started, result.run_id


def _run_partitions(
    pool: Executor, languages: list[str], selection: list[str] | None, run_config: dict | None = None
) -> list[str]:
    """Run the pipeline job for each language on the pool's worker processes, as many languages at a time as
    it has workers (the warehouse serialises their writes); return the languages that failed."""
    failures = []
    futures = [pool.submit(_run_one, code, selection, run_config) for code in languages]
    for future in as_completed(futures):
        code, ok, seconds, run_id = future.result()
        print(f"xinst: {code} {'ok' if ok else 'FAILED'} in {seconds:.1f}s (run {run_id})", flush=True)
        if not ok:
            failures.append(code)
    return failures


def _run_language_ranges(
    languages: list[str], codes: list[str], selection: list[str] | None, workers: int | None
) -> list[str]:
    """Materialize the pipeline job (or ``selection``) for ``languages`` in this process, one run over each
    stretch of consecutive partitions (all of them in one run when every language is selected), as the nightly
    schedule does; return the languages of the runs that failed."""
    import dagster as dg

    from xinst_assets.partitions import contiguous_ranges, range_tags

    run_config: dict = {}
    if workers and (selection is None or "document_signals" in selection):
        run_config = {"ops": {"document_signals": {"config": {"workers": workers}}}}
    defs = _definitions()
    # Everything imported and built so far lives as long as the process: the garbage collector need not scan
    # it again in every full collection of the run, nor at exit (half a second at exit alone).
    gc.freeze()
    if selection is None or "screened_documents" in selection or "language_filter_stats" in selection:
        _warm_up_dbt(defs)
    failures: list[str] = []
    with _screening_ahead(defs, selection, workers):
        for stretch in contiguous_ranges(codes, languages):
            started = time.monotonic()
            with dg.DagsterInstance.get() as instance:
                result = defs.resolve_job_def("xinst_pipeline").execute_in_process(
                    instance=instance, tags=range_tags(stretch), run_config=run_config, raise_on_error=False,
                    asset_selection=[dg.AssetKey(k) for k in selection] if selection else None,
                )
            print(f"xinst: {','.join(stretch)} {'ok' if result.success else 'FAILED'} in "
                  f"{time.monotonic() - started:.1f}s (run {result.run_id})", flush=True)
            if not result.success:
                failures += stretch
    return failures


def _screening_ahead(defs, selection: list[str] | None, workers: int | None) -> contextlib.AbstractContextManager:
    """The processes that will screen ``document_signals``' documents, started now: they import and load the
    model while the run starts and ingests the raw shards (about a second each, otherwise paid in the step)."""
    from xinst_assets.config import XinstConfig
    from xinst_assets.core.screening_files import available_cores, started_ahead

    count = workers or available_cores()
    if count <= 1 or (selection is not None and "document_signals" not in selection):
        return contextlib.nullcontext()
    return started_ahead(count, defs.resources["lid_model"].resolved_path(), XinstConfig.from_env().registry)


def _warm_up_dbt(defs) -> None:
    """dbt's first-invocation set-up, on a thread while the run's first steps (ingestion, screening) work."""
    from xinst_assets.resources.dbt_runner import warm_up_in_background

    dbt, store = defs.resources["dbt"], defs.resources["store"]
    warm_up_in_background(Path(dbt.project_dir), Path(dbt.profiles_dir or dbt.project_dir), store.dbt_env())


def _run_unpartitioned(job_name: str, selection: list[str] | None, run_config: dict | None) -> bool:
    import dagster as dg

    started = time.monotonic()
    defs = _definitions()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, run_config=run_config or {}, raise_on_error=False,
            asset_selection=[dg.AssetKey(k) for k in selection] if selection else None,
        )
    print(f"xinst: {job_name}{selection or ''} {'ok' if result.success else 'FAILED'} in "
          f"{time.monotonic() - started:.1f}s (run {result.run_id})", flush=True)
    return result.success


def demo_data_run_config(rounds: int = 1) -> dict:
    """The demo's run config of the data stages; ``rounds`` > 1 switches self-training rounds on."""
    config = json.loads(json.dumps(DEMO_DATA_RUN_CONFIG))
    if rounds > 1:
        scored = config["ops"].setdefault("scored_pairs", {"config": {}})["config"]
        scored.update(rounds=rounds, self_training_steps=DEMO_SELF_TRAINING_STEPS)
    return config


def _demo(pool: Executor, languages: list[str], rounds: int = 1) -> int:
    """The whole pipeline on the embedded sample: curated inputs, the generator and the curator once, every
    language's data stages (two at a time), then tuning and evaluation over all languages."""
    print(f"xinst: demo over {', '.join(languages)}" + (f", {rounds} self-curation rounds" if rounds > 1 else ""),
          flush=True)
    failures = _run_partitions(pool, languages, CURATED_ASSETS)
    for shared in SHARED_MODEL_ASSETS:
        if not failures and not _run_unpartitioned("xinst_pipeline", [shared], None):
            failures.append(shared)
    if not failures:
        failures += _run_partitions(pool, languages, None, demo_data_run_config(rounds))
    if not failures and not _run_unpartitioned("xinst_tuning", None, DEMO_TUNING_RUN_CONFIG):
        failures.append("tuning")
    if failures:
        print(f"xinst: failed: {', '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


def _print_where(home: Path, dagster_home: Path, store) -> None:
    warehouse = (f"{store.path}  (duckdb -readonly {store.path})" if store.backend == "embedded"
                 else store.describe())
    print(
        "\n".join(
            [
                "",
                "xinst: done.",
                f"  data home      : {home}",
                f"  warehouse      : {warehouse}",
                f"  models         : {home / 'models'}",
                f"  exports        : {home / 'exports'}",
                f"  Dagster runs   : {dagster_home}",
                "",
                "Open the Dagster UI on these runs and assets:",
                f"  DAGSTER_HOME={dagster_home} XINST_HOME={home} .venv/bin/dagster dev -h 127.0.0.1 -p 3000",
                "  then browse http://127.0.0.1:3000 (or run: .venv/bin/xinst ui)",
            ]
        )
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _check_selection(defs, selection: list[str]) -> None:
    """A :class:`ConfigError` naming the fix when ``selection`` names an unknown asset, or only some of the
    assets one step makes together (Dagster would otherwise fail with a traceback)."""
    from dagster import AssetKey

    from xinst_assets.errors import ConfigError

    graph = defs.resolve_asset_graph()
    known = {key.to_user_string() for key in graph.get_all_asset_keys()}
    unknown = [name for name in selection if name not in known]
    if unknown:
        raise ConfigError(f"unknown asset {', '.join(map(repr, unknown))} in --select; the assets are: "
                          f"{', '.join(sorted(known))}")
    chosen = set(selection)
    for name in selection:
        assets_def = graph.assets_def_for_key(AssetKey(name))
        together = {key.to_user_string() for key in assets_def.keys}
        if not assets_def.can_subset and not together <= chosen:
            missing = sorted(together - chosen)
            raise ConfigError(f"{name} is made in one step with {', '.join(missing)}: select them together "
                              f"(--select {','.join(selection + missing)})")


def _command(args: argparse.Namespace) -> int:
    from xinst_assets.config import XinstConfig
    from xinst_assets.errors import ConfigError

    home = (args.home or default_home()).expanduser().resolve()
    if home.exists() and not home.is_dir():
        raise ConfigError(f"the data home {home} is a file, not a folder: give --home (or XINST_HOME) a folder")
    os.environ["XINST_HOME"] = str(home)
    config = XinstConfig.from_env()  # a bad registry, cron or time zone stops here, before any work
    registry = config.registry
    languages = args.languages.split(",") if getattr(args, "languages", None) else registry.codes
    for language in languages:
        registry.get(language)  # an unknown code fails here too
    store = _store(home, config)  # a store that is not configured fails here, before any work
    selection = args.select.split(",") if getattr(args, "select", None) else None
    if selection:
        _check_selection(_definitions(), selection)
    if args.command != "ui" and (selection is None or "raw_web_text" in selection):
        from xinst_assets.core.discovery import source_plans

        source_plans(config.raw_patterns)  # a raw source that cannot be used fails here, in one line
    try:
        dagster_home = _prepare_environment(home)
    except PermissionError as error:
        raise ConfigError(f"cannot write {error.filename}: permission denied; choose a data home (--home or "
                          "XINST_HOME) and a DAGSTER_HOME that you can write") from None
    if args.command == "ui":
        return subprocess.call(
            [str(Path(sys.executable).with_name("dagster")), "dev", "-m", "xinst_assets.definitions",
             "-h", "127.0.0.1", "-p", str(args.port)]
        )
    if args.command == "demo":
        with _worker_pool(args.workers) as pool:
            code = _demo(pool, languages, args.rounds)
    else:
        code = 1 if _run_language_ranges(languages, registry.codes, selection, args.workers) else 0
    _print_where(home, dagster_home, store)
    return code


def _store(home: Path, config):
    """The store the environment chooses (XINST_STORE), checked: a lakehouse without its catalog or data path
    is a :class:`ConfigError` that names the setting, not a failure in the run's first step."""
    from xinst_assets.errors import ConfigError
    from xinst_assets.store import Store

    try:
        store = Store.from_env(home, warehouse=config.warehouse)
        if store.backend == "lakehouse":
            store.lakehouse_settings()
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return store


RELIABLE_WINDOWS = 200  # windows of reference text under which `xinst calibrate` warns


def _calibrate(args: argparse.Namespace) -> int:
    """``xinst calibrate``: see its --help."""
    from xinst_assets.calibration_files import calibration_table, packaged_anchor, write_registry_file
    from xinst_assets.core.calibration import (
        DEFAULT_SHARE,
        anchor_from_texts,
        calibrate_language,
        read_reference,
        sample_reference,
    )
    from xinst_assets.core.quality import thresholds_for
    from xinst_assets.errors import ConfigError
    from xinst_assets.languages import UnknownLanguageError, load_registry
    from xinst_assets.settings import SAMPLE_DIR

    try:
        lang = load_registry().get(args.language)
    except (UnknownLanguageError, ConfigError) as error:
        print(f"xinst calibrate: {error}", file=sys.stderr)
        return 2
    if bool(args.reference) == args.packaged_reference:
        print("xinst calibrate: give --reference FILE (one or more) or --packaged-reference", file=sys.stderr)
        return 2
    try:
        if args.packaged_reference:
            texts = sample_reference(SAMPLE_DIR, lang.code)
            name = args.name or f"xinst packaged reference of {lang.code}"
        else:
            texts = list(read_reference(args.reference, args.text_field))
            name = args.name or ", ".join(p.name for p in args.reference)
        if args.english_reference:
            anchor, _ = anchor_from_texts(read_reference(args.english_reference, args.text_field),
                                          ", ".join(p.name for p in args.english_reference))
        else:
            anchor = packaged_anchor()
        calibration = calibrate_language(lang, texts, anchor, name, args.share or DEFAULT_SHARE)
    except (FileNotFoundError, ValueError) as error:
        print(f"xinst calibrate: {error}", file=sys.stderr)
        return 2
    if calibration.reference["windows"] < RELIABLE_WINDOWS:
        print(f"xinst calibrate: warning: {calibration.reference['windows']} windows of reference text; a 1% quantile "
              f"needs a few hundred (about {RELIABLE_WINDOWS * 300:,} characters or more) to be stable",
              file=sys.stderr)
    write_registry_file(args.out, lang, calibration)
    before = thresholds_for(lang).as_metadata()
    reference = calibration.reference
    print(f"{lang.code} ({lang.name}): {reference['documents']:,} reference documents, {reference['windows']:,} "
          f"windows, {reference['characters']:,} characters")
    print(calibration_table(calibration, before))
    print(f"\nwrote {args.out}; use it with: export XINST_LANGUAGES_FILE={args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xinst`` command."""
    parser = argparse.ArgumentParser(prog="xinst", description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="data home (default: $XINST_HOME or ./var)")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run every stage for every language on the embedded sample")
    demo.add_argument("--languages", help="comma-separated language codes (default: all)")
    demo.add_argument("--workers", type=_positive_int, default=2, help="languages run at the same time (default 2)")
    demo.add_argument("--rounds", type=_positive_int, default=1,
                      help="self-curation rounds (default 1; 2 or more re-train the generator on accepted pairs)")
    run = sub.add_parser("materialize", help="materialize the pipeline (or some assets) for languages")
    run.add_argument("--languages", required=True, help="comma-separated language codes")
    run.add_argument("--select", help="comma-separated asset names (default: the whole pipeline)")
    run.add_argument("--workers", type=_positive_int, default=None,
                     help="processes that screen documents (default: one per available core); the languages run in one "
                     "run (one per stretch of consecutive partitions)")
    ui = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    cal = sub.add_parser(
        "calibrate", help="calibrate a language's quality rules on reference text (writes a registry file)",
        description="Measure reference text of a language (a shard of its Wikipedia, your own curated text) and "
        "write the language's calibrated quality settings, with their provenance, into a registry file to point "
        "XINST_LANGUAGES_FILE at (created, or updated in place). Methods: xinst_assets/core/calibration.py.")
    cal.add_argument("--language", required=True, help="the registry code of the language")
    cal.add_argument("--reference", action="append", default=[], type=Path,
                     help="reference file(s): .jsonl/.jsonl.gz (a text field), .parquet (a text column), .txt "
                     "(documents separated by blank lines); repeat for several")
    cal.add_argument("--packaged-reference", action="store_true",
                     help="use the packaged reference of the language (what the shipped calibration used)")
    cal.add_argument("--text-field", default="text", help="the field or column holding the text (default: text)")
    cal.add_argument("--name", help="the reference's name in the provenance (default: the file names)")
    cal.add_argument("--share", type=float, default=None,
                     help="the share of clean reference text each rule may remove (default 0.01)")
    cal.add_argument("--english-reference", action="append", default=[], type=Path,
                     help="English reference file(s) to measure the anchor on (default: the packaged anchor)")
    cal.add_argument("--out", type=Path, default=Path("languages.calibrated.yaml"),
                     help="the registry file to write (default: languages.calibrated.yaml)")
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        return _calibrate(args)

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("xinst").setLevel(logging.INFO)
    from xinst_assets.core.discovery import SourceError
    from xinst_assets.errors import ConfigError
    from xinst_assets.instance_storage import InstanceLockTimeout
    from xinst_assets.languages import UnknownLanguageError

    try:
        return _command(args)
    except (ConfigError, SourceError, UnknownLanguageError, InstanceLockTimeout) as error:
        print(f"xinst: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
