"""The ``xinst`` command: run the pipeline on the sample, materialize a language, open the UI."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from xinst_assets.settings import default_home


def _prepare_environment(home: Path) -> Path:
    """Point xinst and Dagster at ``home``; return the Dagster instance folder."""
    os.environ["XINST_HOME"] = str(home)
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(dagster_home))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    return Path(os.environ["DAGSTER_HOME"])


# The demo's tiny model cannot judge or answer well: the demo accepts level-2 pairs so that data reaches every
# stage, trains the tuned model briefly and keeps answers short. Real runs use the defaults.
DEMO_DATA_RUN_CONFIG = {
    "ops": {
        "scored_pairs": {"config": {"accept_label": 2}},
        "diversified_dataset": {"config": {"accept_label": 2}},
    }
}
DEMO_TUNING_RUN_CONFIG = {
    "ops": {
        "tuned_checkpoint": {"config": {"max_steps": 40, "batch_size": 8, "max_length": 256}},
        "evaluation": {"config": {"max_new_tokens": 48}},
    }
}


def _run_partitions(
    languages: list[str] | None, selection: str | None, run_config: dict | None = None, tune: bool = False
) -> int:
    """Run the pipeline job for each language partition (then the tuning job when ``tune``), in this process,
    recorded in the Dagster instance."""
    import dagster as dg

    from xinst_assets.config import XinstConfig
    from xinst_assets.definitions import build_definitions

    config = XinstConfig.from_env()
    defs = build_definitions(config)
    langs = languages or config.registry.codes
    for code in langs:
        config.registry.get(code)  # fail early on an unknown language
    job = defs.resolve_job_def("xinst_pipeline")
    failures = []
    with dg.DagsterInstance.get() as instance:
        for code in langs:
            started = time.monotonic()
            print(f"xinst: materializing language {code} ...", flush=True)
            result = job.execute_in_process(
                partition_key=code,
                instance=instance,
                run_config=(run_config or {}) if not selection else {},
                asset_selection=[dg.AssetKey(k) for k in selection.split(",")] if selection else None,
                raise_on_error=False,
            )
            status = "ok" if result.success else "FAILED"
            print(f"xinst: {code} {status} in {time.monotonic() - started:.1f}s (run {result.run_id})", flush=True)
            if not result.success:
                failures.append(code)
        if tune and not failures:
            started = time.monotonic()
            print("xinst: tuning and evaluating the model on every language ...", flush=True)
            result = defs.resolve_job_def("xinst_tuning").execute_in_process(
                instance=instance, run_config=DEMO_TUNING_RUN_CONFIG, raise_on_error=False)
            print(f"xinst: tuning {'ok' if result.success else 'FAILED'} in {time.monotonic() - started:.1f}s "
                  f"(run {result.run_id})", flush=True)
            if not result.success:
                failures.append("tuning")
    if failures:
        print(f"xinst: failed languages: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def _print_where(home: Path, dagster_home: Path) -> None:
    print(
        "\n".join(
            [
                "",
                "xinst: done.",
                f"  data home      : {home}",
                f"  warehouse      : {home / 'warehouse.duckdb'}  (duckdb -readonly {home / 'warehouse.duckdb'})",
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xinst`` command."""
    parser = argparse.ArgumentParser(prog="xinst", description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="data home (default: $XINST_HOME or ./var)")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run every stage for every language on the embedded sample")
    demo.add_argument("--languages", help="comma-separated language codes (default: all)")
    run = sub.add_parser("materialize", help="materialize the pipeline (or some assets) for languages")
    run.add_argument("--languages", required=True, help="comma-separated language codes")
    run.add_argument("--select", help="comma-separated asset names (default: the whole pipeline)")
    ui = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("xinst").setLevel(logging.INFO)
    home = (args.home or default_home()).expanduser().resolve()
    dagster_home = _prepare_environment(home)
    if args.command == "ui":
        return subprocess.call(
            [str(Path(sys.executable).with_name("dagster")), "dev", "-m", "xinst_assets.definitions",
             "-h", "127.0.0.1", "-p", str(args.port)]
        )
    languages = args.languages.split(",") if args.languages else None
    if args.command == "demo":
        code = _run_partitions(languages, None, DEMO_DATA_RUN_CONFIG, tune=True)
    else:
        code = _run_partitions(languages, args.select)
    _print_where(home, dagster_home)
    return code


if __name__ == "__main__":
    sys.exit(main())
