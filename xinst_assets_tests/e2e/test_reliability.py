"""A run SIGKILLed in the middle of a stage, then run again, ends with exactly the tables of a run never
killed, and the killed runs are marked failed.

The run is the real ``dagster asset materialize`` command in its own process group; SIGKILL gives it no chance
to clean up, as when a machine or a pod dies. Where it dies is not left to timing: the run is started with
``XINST_PAUSE_AT`` naming one of the code's pause points (``xinst_assets/core/pause_points.py``), stops there
and says so in a file, and the test kills it only then. So each case is the one it means to be on any machine,
however fast or loaded: inside ``raw_web_text``'s write transaction, with a language's rows inserted and not
committed; in ``document_signals`` between its screening and its writes (no transaction open, the signals
staged in scratch files); inside ``document_signals``' write transaction. The other reliability checks (ten
partitions at once, materializing twice, a sensor tick with nothing new) run through the real server in
``test_webserver.py``.

The corpus is generated (Swahili-like documents in five shards, plus a few broken records), so that the
transactions hold several inserts of thousands of rows.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import dagster as dg
import pytest

from xinst_assets.core.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, POINTS, REACHED_FILE
from xinst_assets.instance_storage import LOCAL_INSTANCE_YAML
from xinst_assets.resources.warehouse import Warehouse
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests.conftest import write_jsonl
from xinst_assets_tests.e2e.conftest import (
    e2e_environment,
    log_tail,
    start_process,
    stop_process_group,
    venv_tool,
)
from xinst_assets_tests.processes import wait_for_file

LANG = "sw"
CORPUS_DOCS = 6_000
SHARDS = 5
BROKEN_RECORDS = [b"{not json", json.dumps({"url": "https://example.org/no-text"}).encode()]
# Where each killed run dies, in order, on one deployment: (the step it dies in, the pause point).
KILLS = (
    ("raw_web_text", "raw_web_text: before commit"),  # nothing of the run committed
    ("document_signals", "document_signals: screened, before writing"),  # the ingest committed, no signal
    ("document_signals", "document_signals: before commit"),  # the signals inserted, not committed
)
# Five runs of the CLI (each loads the definitions: 10-40 s idle, minutes on a loaded machine): a hang guard,
# not an expected duration.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
# The CLI's default multiprocess executor would put each step in a child process; in-process keeps one run
# process (the one killed), as a run worker on a dying machine.
RUN_CONFIG = json.dumps({"execution": {"config": {"in_process": {}}}})
# What a table holds, without columns that say *when* a run happened (ingested_at, first_seen_at); texts are
# compared by digest to keep the snapshots small.
SNAPSHOT_QUERIES = {
    "raw_documents": "SELECT lang, doc_id, md5(text), url, timestamp, source, shard, position "
    "FROM raw_documents",
    "raw_quarantine": "SELECT lang, shard, position, reason, detail, snippet FROM raw_quarantine",
    "raw_shards": "SELECT lang, shard, fingerprint, size_bytes, mtime_ns, rows_ingested, rows_quarantined "
    "FROM raw_shards",
    "document_signals": "SELECT lang, doc_id, settings_key, lid_label, lid_score, lid_runner_up, "
    "lid_runner_up_score, chars, words, reject_reason FROM document_signals",
}


def _sample_lines(lang: str) -> list[str]:
    """Lines of the embedded sample's documents in ``lang``: material for the generated corpus."""
    lines = []
    for shard in sorted((SAMPLE_DIR / "raw" / lang).glob("*.jsonl")):
        for record in shard.read_text(encoding="utf-8").splitlines():
            lines.extend(line for line in json.loads(record)["text"].splitlines() if len(line) > 20)
    return lines


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five shards of generated documents (seeded): sample lines recombined, with some exact repeats."""
    root = tmp_path_factory.mktemp("reliability-raw")
    lines = _sample_lines(LANG)
    assert len(lines) > 50, "the embedded Swahili sample is too small to build a corpus from"
    rng = random.Random(20261123)
    per_shard = CORPUS_DOCS // SHARDS
    for shard in range(SHARDS):
        records: list = []
        for i in range(per_shard):
            body = "\n".join(rng.sample(lines, rng.randint(3, 8)))
            records.append({"text": body, "url": f"https://example.org/{shard}/{i}", "source": "generated"})
        records[10:10] = BROKEN_RECORDS
        write_jsonl(root / LANG / f"part-{shard:05d}.jsonl", records)
    return root


def materialize_command() -> list[str]:
    return [
        venv_tool("dagster"), "asset", "materialize", "-m", "xinst_assets.definitions",
        "--select", "raw_web_text,document_signals", "--partition", LANG, "--config-json", RUN_CONFIG,
    ]


def deployment(root: Path, corpus: Path) -> dict:
    """A fresh XINST_HOME and DAGSTER_HOME under ``root``, reading ``corpus``; the Dagster home has the local
    instance settings that the ``xinst`` command writes (runs claimed by their process, see
    ``xinst_assets/core/run_owners.py``)."""
    (root / "dagster_home").mkdir(parents=True)
    (root / "dagster_home" / "dagster.yaml").write_text(LOCAL_INSTANCE_YAML, encoding="utf-8")
    return e2e_environment(root / "dagster_home", root / "xinst_home", None, XINST_RAW_SOURCES=str(corpus))


def run_to_completion(env: dict, root: Path, name: str) -> str:
    log = root / f"{name}.log"
    proc = start_process(materialize_command(), env, log, cwd=root)
    try:
        proc.wait()  # however long it takes: pytest-timeout stands for a hang
    finally:
        stop_process_group(proc)
    assert proc.returncode == 0, log_tail(log)
    return log.read_text(encoding="utf-8", errors="replace")


def run_and_kill(env: dict, root: Path, stage: str, point: str) -> str:
    """Start a run that stops at pause ``point`` (in ``stage``); once it is there, SIGKILL its process group.
    Return the run's log."""
    assert point in POINTS, f"no pause point {point!r} in xinst_assets/core/pause_points.py"
    name = point.replace(":", "").replace(",", "").replace(" ", "-")
    pause_dir = root / f"pause-{name}"
    log = root / f"killed-at-{name}.log"
    proc = start_process(materialize_command(), {**env, PAUSE_AT_ENV: point, PAUSE_DIR_ENV: str(pause_dir)}, log,
                         cwd=root)
    try:
        try:
            reached = json.loads(wait_for_file(pause_dir / REACHED_FILE, proc, f"pause point {point!r}"))
        except AssertionError as error:
            raise AssertionError(f"{error}\n{log_tail(log)}") from None
        assert reached["point"] == point
        pid = reached["pid"]
        assert pid == proc.pid or _group_of(pid) == proc.pid, f"paused in pid {pid}, not in the run's processes"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        stop_process_group(proc)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed (exit {proc.returncode})"
    assert f'Started execution of step "{stage}"' in text, text[-4000:]
    assert f'Finished execution of step "{stage}"' not in text, f"{stage} finished before the kill"
    return text


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def snapshot(home: Path) -> dict[str, list[tuple]]:
    """The compared tables' rows (a table not created yet: no rows)."""
    warehouse = Warehouse(path=str(home / "warehouse.duckdb"), lock_timeout_s=60)
    with warehouse.read() as con:
        present = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        return {table: con.execute(f"{query} ORDER BY ALL").fetchall() if table in present else []
                for table, query in SNAPSHOT_QUERIES.items()}


RAW_TABLES = ("raw_documents", "raw_quarantine", "raw_shards")


@pytest.fixture(scope="module")
def uninterrupted(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:
    """The tables after one run that nobody killed."""
    root = tmp_path_factory.mktemp("reliability-reference")
    run_to_completion(deployment(root, corpus), root, "uninterrupted")
    tables = snapshot(root / "xinst_home")
    assert len(tables["raw_documents"]) == CORPUS_DOCS
    assert len(tables["raw_quarantine"]) == SHARDS * len(BROKEN_RECORDS)
    assert len(tables["document_signals"]) == len({row[1] for row in tables["raw_documents"]})
    return tables


def test_runs_killed_mid_stage_then_run_again_leave_exactly_the_tables_of_an_uninterrupted_run(
    corpus: Path, uninterrupted: dict[str, list[tuple]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """One deployment, killed three times (see ``KILLS``): inside ``raw_web_text``'s transaction (nothing of
    the run committed yet), then in ``document_signals`` after its screening and inside its transaction (its
    ingest committed, its signals not); each kill leaves the committed state, and a fourth run completes with
    the tables of a run never killed. Each run marks the one killed before it failed."""
    env = deployment(tmp_path, corpus)
    home = tmp_path / "xinst_home"
    logs, timings = [], []
    for stage, point in KILLS:
        started = time.monotonic()
        logs.append(run_and_kill(env, tmp_path, stage, point))
        timings.append(f"killed at {point!r} after {time.monotonic() - started:.0f}s")
        left = snapshot(home)
        assert left["document_signals"] == [], f"signals committed by a run killed at {point!r}"
        if stage == "raw_web_text":  # the transaction never committed: no row of the run
            assert all(left[table] == [] for table in RAW_TABLES), f"rows committed by a run killed at {point!r}"
        else:  # the ingest of this run (or of the one before) committed whole
            assert all(left[table] == uninterrupted[table] for table in RAW_TABLES)
    started = time.monotonic()
    logs.append(run_to_completion(env, tmp_path, "rerun"))
    timings.append(f"rerun {time.monotonic() - started:.0f}s")

    after = snapshot(home)
    for table, expected in uninterrupted.items():
        rows = after[table]
        assert len(rows) == len(expected), f"{table}: {len(rows)} rows after the rerun, not {len(expected)}"
        assert len(set(rows)) == len(rows), f"{table}: duplicate rows after the rerun"
        assert rows == expected, f"{table}: rows differ from the uninterrupted run"

    # The killed runs are failed, each by the next run's start (its process was gone); the last one succeeded.
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        runs = sorted(instance.get_runs(), key=lambda run: instance.get_run_record_by_id(run.run_id).create_timestamp)
        assert [run.status for run in runs] == [dg.DagsterRunStatus.FAILURE] * len(KILLS) + [
            dg.DagsterRunStatus.SUCCESS]
        for killed, next_log in zip(runs, logs[1:]):
            messages = [event.message or "" for event in instance.all_logs(killed.run_id)]
            assert any("is gone" in m and "Marked failed by xinst" in m for m in messages), killed.run_id
            assert f"marked run {killed.run_id} failed" in next_log, next_log[-4000:]
    orphans = sorted(p.name for p in (home / "scratch").glob("*"))
    print(f"\n{'; '.join(timings)}; scratch left behind by the killed runs: {orphans}")
