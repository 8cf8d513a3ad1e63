"""Concurrent use of a data home: commands started at once on a fresh home, and the instruction generator under
a backfill of several partitions; this checkout side by side with an earlier revision.

    .venv/bin/python bench/bench_concurrent_use.py [--baseline-rev REV] [--commands 10] [--partitions fi,sw,ur]

For each code (the earlier revision's tree, extracted from git into a temporary folder and put first on
``PYTHONPATH``, every process started outside the checkout; then this checkout), on fresh data homes:

* ``commands``: ``--commands`` ``xinst materialize --languages <code> --select seed_pairs`` processes started
  at once on a fresh home (one language each, the registry's, repeated if needed); then one more such command
  after them (does the home still work?). Printed: the commands that failed, the wall time until the last one
  ended, how many schema versions each Dagster database records (1 is healthy), and the later command's exit.
* ``instance``: ``--commands`` processes that each import Dagster and xinst, wait for a common signal (a file
  appearing), then make the instance ready the way the ``xinst`` command does (the earlier revision: write
  ``dagster.yaml``, open the instance; this checkout: ``prepare_local_instance``) and run a one-op job. The
  signal lines up the part of each command that races (on a loaded machine the commands' imports spread them
  out). Printed: the processes that failed, and the schema versions recorded.
* ``backfill``: the instance and the seed pairs made first by one command, then one partition run per language
  of ``--partitions`` started at once, each materializing ``seed_pairs`` and ``instruction_generator`` with the
  demo model settings (as a backfill of the pipeline job runs them). Printed: how many training processes were
  launched (Dagster's log lines ``training: <command>``), the wall time, and the seed rows of the generator
  that was recorded last against the seed rows of every language.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
XINST = Path(sys.executable).with_name("xinst")
SCHEMA_FILES = ("history/runs.db", "schedules/schedules.db", "history/runs/index.db")

PARTITION_RUN = r"""
import sys
import dagster as dg
from xinst_assets.config import XinstConfig
from xinst_assets.definitions import build_definitions

defs = build_definitions(XinstConfig.from_env())
with dg.DagsterInstance.get() as instance:
    result = defs.resolve_job_def("xinst_pipeline").execute_in_process(
        partition_key=sys.argv[1], instance=instance, raise_on_error=False,
        asset_selection=[dg.AssetKey("seed_pairs"), dg.AssetKey("instruction_generator")])
sys.exit(0 if result.success else 1)
"""

OPEN_AT_ONCE = r"""
import sys, time
from pathlib import Path
import dagster as dg
from xinst_assets import instance_storage
try:
    from xinst_assets.local_instance import prepare_local_instance
except ImportError:  # the earlier revision: the command wrote dagster.yaml, then opened the instance
    prepare_local_instance = None
home, go = Path(sys.argv[1]), Path(sys.argv[2])

@dg.op
def one():
    return 1

@dg.job
def tiny():
    one()

import os
(go.parent / f"ready-{os.getpid()}").write_text("")
while not go.exists():
    time.sleep(0.01)
if prepare_local_instance is not None:
    prepare_local_instance(home)
else:
    instance_storage.write_local_instance_config(home)
with dg.DagsterInstance.get() as instance:
    assert tiny.execute_in_process(instance=instance).success
"""

COUNT_TRAININGS = r"""
import json, sys
import dagster as dg
with dg.DagsterInstance.get() as instance:
    launches = 0
    for record in instance.get_run_records():
        for entry in instance.all_logs(record.dagster_run.run_id):
            message = entry.user_message or ""
            if message.startswith("training: ") and "xinst_assets.training" in message:
                launches += 1
print(json.dumps({"launches": launches}))
"""


def _extract(rev: str, into: Path) -> Path:
    """The tree of ``rev`` (its Python package and dbt project) extracted into ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "xinst_assets", "dbt"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _env(home: Path, source: Path | None) -> dict:
    env = {**os.environ, "XINST_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"), "DO_NOT_TRACK": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for name in ("XINST_LANGUAGES_FILE", "XINST_WAREHOUSE", "XINST_RAW_SOURCES"):
        env.pop(name, None)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def _versions(dagster_home: Path) -> list[int]:
    counts = []
    for name in SCHEMA_FILES:
        try:
            with sqlite3.connect(dagster_home / name) as con:
                counts.append(con.execute("SELECT count(*) FROM alembic_version").fetchone()[0])
        except sqlite3.Error:
            counts.append(0)
    return counts


def commands(source: Path | None, count: int, languages: list[str], work: Path) -> dict:
    home = work / "commands"
    started = time.monotonic()
    procs = [subprocess.Popen([str(XINST), "materialize", "--languages", languages[k % len(languages)], "--select",
                               "seed_pairs"], env=_env(home, source), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=work) for k in range(count)]
    logs = [proc.communicate()[0] for proc in procs]
    seconds = time.monotonic() - started
    errors = sorted({next((line for line in reversed(log.splitlines()) if "Error" in line), "?")[:120]
                     for proc, log in zip(procs, logs) if proc.returncode != 0})
    later = subprocess.run([str(XINST), "materialize", "--languages", languages[0], "--select", "seed_pairs"],
                           env=_env(home, source), capture_output=True, text=True, cwd=work)
    return {"failed": sum(proc.returncode != 0 for proc in procs), "seconds": seconds, "errors": errors,
            "schema_versions": _versions(home / "dagster_home"), "later_exit": later.returncode}


def instance_at_once(source: Path | None, count: int, work: Path) -> dict:
    home = work / "instance"
    go = work / "go"
    env = _env(home, source)
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, str(home / "dagster_home"), str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=work)
             for _ in range(count)]
    while len(list(work.glob("ready-*"))) < count:  # every process has imported everything and waits
        if any(proc.poll() is not None for proc in procs):
            break
        time.sleep(0.1)
    go.write_text("go")
    logs = [proc.communicate()[0] for proc in procs]
    errors = sorted({next((line for line in reversed(log.splitlines()) if "Error" in line), "?")[:120]
                     for proc, log in zip(procs, logs) if proc.returncode != 0})
    return {"failed": sum(proc.returncode != 0 for proc in procs), "errors": errors,
            "schema_versions": _versions(home / "dagster_home")}


def backfill(source: Path | None, partitions: list[str], work: Path) -> dict:
    home = work / "backfill"
    env = _env(home, source)
    first = subprocess.run([str(XINST), "materialize", "--languages", ",".join(partitions), "--select", "seed_pairs"],
                           env=env, capture_output=True, text=True, cwd=work)
    if first.returncode != 0:
        raise RuntimeError(f"preparing the backfill home failed:\n{first.stdout[-2000:]}{first.stderr[-2000:]}")
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", PARTITION_RUN, code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=work) for code in partitions]
    logs = [proc.communicate()[0] for proc in procs]
    seconds = time.monotonic() - started
    counted = subprocess.run([sys.executable, "-c", COUNT_TRAININGS], env=env, capture_output=True, text=True,
                             check=True, cwd=work)
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        path = con.execute("SELECT path FROM checkpoints WHERE name = 'instruction_generator'").fetchone()[0]
    lineage = json.loads((Path(path) / "xinst_training.json").read_text(encoding="utf-8"))
    seed_files = (source or ROOT) / "xinst_assets" / "data" / "sample" / "seed_pairs"
    all_seeds = sum(1 for p in seed_files.glob("*.jsonl") for line in p.read_text().splitlines() if line.strip())
    return {"failed_runs": sum(proc.returncode != 0 for proc in procs), "trainings": json.loads(counted.stdout)["launches"],
            "seconds": seconds, "recorded_seed_rows": sum(f["rows"] for f in lineage["data_files"]),
            "all_seed_rows": all_seeds, "errors": [log[-300:] for proc, log in zip(procs, logs) if proc.returncode]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rev", default=None, help="earlier revision to run side by side (git rev)")
    parser.add_argument("--commands", type=int, default=10)
    parser.add_argument("--partitions", default="fi,sw,ur")
    parser.add_argument("--only", choices=["commands", "instance", "backfill"], action="append",
                        help="run only these parts (repeatable; default: all)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from xinst_assets.languages import load_registry

    languages = load_registry().codes
    partitions = args.partitions.split(",")
    with tempfile.TemporaryDirectory(prefix="xinst-bench-concurrent-") as tmp:
        codes = [("this checkout", None)]
        if args.baseline_rev:
            codes.insert(0, (f"baseline {args.baseline_rev}", _extract(args.baseline_rev, Path(tmp) / "baseline")))
        for name, source in codes:
            work = Path(tmp) / name.replace(" ", "-")
            work.mkdir()
            print(f"== {name}", flush=True)
            parts = args.only or ["commands", "instance", "backfill"]
            if "commands" in parts:
                result = commands(source, args.commands, languages, work)
                print(f"{args.commands} commands on a fresh home: {result['failed']} failed, {result['seconds']:.1f} s "
                      f"until the last ended; schema versions recorded (runs, schedules, event index): "
                      f"{result['schema_versions']}; a command after them exits {result['later_exit']}", flush=True)
                for error in result["errors"]:
                    print(f"   error: {error}")
            if "instance" in parts:
                result = instance_at_once(source, args.commands, work)
                print(f"{args.commands} processes making the instance ready at the same moment: {result['failed']} "
                      f"failed; schema versions recorded: {result['schema_versions']}", flush=True)
                for error in result["errors"]:
                    print(f"   error: {error}")
            if "backfill" not in parts:
                shutil.rmtree(work, ignore_errors=True)
                continue
            result = backfill(source, partitions, work)
            print(f"{len(partitions)} partition runs at once ({','.join(partitions)}): {result['failed_runs']} failed, "
                  f"{result['trainings']} generator trainings, {result['seconds']:.1f} s; the recorded generator "
                  f"trained on {result['recorded_seed_rows']} of {result['all_seed_rows']} seed rows", flush=True)
            for error in result["errors"]:
                print(f"   error: ...{error}")
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
