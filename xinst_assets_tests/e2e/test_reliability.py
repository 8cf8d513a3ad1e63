"""A run SIGKILLed in the middle of a stage, then run again, ends with exactly the tables of a run never
killed.

The corpus is generated (30,000 Swahili-like documents in five shards, plus a few broken records) so that
``raw_web_text`` and ``document_signals`` take seconds (about 2 s and 12 s on an idle 2-core machine), long
enough to be killed while they work. The run is the real ``dagster asset materialize`` command in its own
process group; SIGKILL gives it no chance to clean up, as when a machine or a pod dies. The other reliability
checks (ten partitions at once, materializing twice, a sensor tick with nothing new) run through the real
server in ``test_webserver.py``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

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

LANG = "sw"
CORPUS_DOCS = 30_000  # ~24 MB
SHARDS = 5
BROKEN_RECORDS = [b"{not json", json.dumps({"url": "https://example.org/no-text"}).encode()]
RUN_TIMEOUT_S = 150  # one CLI run loads the definitions (10-40 s) and screens 30k documents (~12-40 s)
# How far into a stage the kill comes: well before its end on an idle machine (a loaded one only makes the
# stage longer); the test checks that the stage had not finished.
KILL_AFTER_START_S = {"raw_web_text": 0.5, "document_signals": 2.0}
pytestmark = [pytest.mark.slow, pytest.mark.timeout(5 * RUN_TIMEOUT_S)]
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
    """A fresh XINST_HOME and DAGSTER_HOME under ``root``, reading ``corpus``."""
    (root / "dagster_home").mkdir(parents=True)
    (root / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return e2e_environment(root / "dagster_home", root / "xinst_home", None, XINST_RAW_SOURCES=str(corpus))


def run_to_completion(env: dict, root: Path, name: str) -> str:
    log = root / f"{name}.log"
    proc = start_process(materialize_command(), env, log, cwd=root)
    try:
        proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        stop_process_group(proc)
    assert proc.returncode == 0, log_tail(log)
    return log.read_text(encoding="utf-8", errors="replace")


def run_and_kill(env: dict, root: Path, stage: str) -> str:
    """Start a run, SIGKILL its process group shortly after ``stage`` starts; return the run's log."""
    log = root / f"killed-in-{stage}.log"
    started = re.compile(rf'STEP_START - Started execution of step "{stage}"')
    proc = start_process(materialize_command(), env, log, cwd=root)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not started.search(log.read_text(encoding="utf-8", errors="replace")):
            assert proc.poll() is None, f"the run ended before {stage} started:\n{log_tail(log)}"
            assert time.monotonic() < deadline, f"{stage} did not start in {RUN_TIMEOUT_S}s:\n{log_tail(log)}"
            time.sleep(0.1)
        time.sleep(KILL_AFTER_START_S[stage])
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop_process_group(proc)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed (exit {proc.returncode})"
    assert f'Finished execution of step "{stage}"' not in text, f"{stage} finished before the kill"
    return text


def snapshot(home: Path) -> dict[str, list[tuple]]:
    warehouse = Warehouse(path=str(home / "warehouse.duckdb"), lock_timeout_s=60)
    with warehouse.read() as con:
        return {table: con.execute(f"{query} ORDER BY ALL").fetchall()
                for table, query in SNAPSHOT_QUERIES.items()}


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
    corpus: Path, uninterrupted: dict[str, list[tuple]], tmp_path: Path
):
    """One deployment, killed twice: in ``raw_web_text`` (nothing of the run committed yet), then, run
    again, in ``document_signals`` (its ingest committed, its signals not); a third run completes."""
    env = deployment(tmp_path, corpus)
    timings = []
    for stage in ("raw_web_text", "document_signals"):
        started = time.monotonic()
        run_and_kill(env, tmp_path, stage)
        timings.append(f"killed in {stage} after {time.monotonic() - started:.0f}s")
    started = time.monotonic()
    run_to_completion(env, tmp_path, "rerun")
    timings.append(f"rerun {time.monotonic() - started:.0f}s")

    after = snapshot(tmp_path / "xinst_home")
    for table, expected in uninterrupted.items():
        rows = after[table]
        assert len(rows) == len(expected), f"{table}: {len(rows)} rows after the rerun, not {len(expected)}"
        assert len(set(rows)) == len(rows), f"{table}: duplicate rows after the rerun"
        assert rows == expected, f"{table}: rows differ from the uninterrupted run"
    orphans = sorted(p.name for p in (tmp_path / "xinst_home" / "scratch").glob("*"))
    print(f"\n{'; '.join(timings)}; scratch left behind by the killed runs: {orphans}")
