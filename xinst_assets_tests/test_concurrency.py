"""Several language partitions writing one warehouse at the same time, from separate processes."""

import os
import sys
from pathlib import Path

import duckdb
import pytest

from xinst_assets_tests import processes
from xinst_assets_tests.conftest import write_jsonl

WRITER = r"""
import sys
from xinst_assets.resources.warehouse import Warehouse, replace_partition
wh = Warehouse(path=sys.argv[1])  # the default lock wait: another writer's windows may take long under load
lang, rounds = sys.argv[2], int(sys.argv[3])
for r in range(rounds):
    with wh.write() as con:
        con.execute("CREATE TABLE IF NOT EXISTS t (lang VARCHAR, i BIGINT, r BIGINT)")
        replace_partition(con, "t", lang, "SELECT ? AS lang, range AS i, ? AS r FROM range(5000)", [lang, r])
    with wh.read() as con:
        n = con.execute("SELECT count(*) FROM t WHERE lang = ?", [lang]).fetchone()[0]
        assert n == 5000, n
print("ok", lang)
"""


def test_concurrent_writer_processes_never_hit_the_duckdb_file_lock_or_lose_rows(tmp_path: Path):
    db = tmp_path / "wh.duckdb"
    done = processes.finish(*[processes.start([sys.executable, "-c", WRITER, str(db), lang, "15"])
                              for lang in ["fi", "sw", "ta", "ur"]])
    assert [p.returncode for p in done] == [0, 0, 0, 0], [p.stderr[-2000:] for p in done]
    with duckdb.connect(str(db), read_only=True) as con:
        counts = dict(con.execute("SELECT lang, count(*) FROM t GROUP BY lang").fetchall())
        rounds = dict(con.execute("SELECT lang, max(r) FROM t GROUP BY lang").fetchall())
    assert counts == {"fi": 5000, "sw": 5000, "ta": 5000, "ur": 5000}
    assert set(rounds.values()) == {14}


@pytest.mark.slow
def test_three_partitions_materialized_concurrently_by_the_dagster_cli_all_land(tmp_path: Path):
    raw = tmp_path / "raw"
    langs = ["fi", "sw", "ur"]
    for lang in langs:
        for shard in range(3):
            docs = [{"text": f"{lang} document {shard}-{i} with some words in it.", "url": f"u{shard}-{i}"}
                    for i in range(4000)]
            write_jsonl(raw / lang / f"part-{shard}.jsonl", docs)
    env = {
        **os.environ,
        "XINST_HOME": str(tmp_path / "home"),
        "XINST_RAW_SOURCES": str(raw),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    (tmp_path / "dagster_home").mkdir()
    dagster = Path(sys.executable).with_name("dagster")
    # Create the instance's storage once, as a deployment does; runs then only append to it.
    migrated = processes.run([str(dagster), "instance", "migrate"], env=env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    done = processes.finish(*[
        processes.start([str(dagster), "asset", "materialize", "-m", "xinst_assets.definitions", "--select",
                         "raw_web_text", "--partition", lang], env=env, stderr_to_stdout=True)
        for lang in langs])
    assert [p.returncode for p in done] == [0, 0, 0], "\n=====\n".join(p.stdout for p in done)
    with duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb"), read_only=True) as con:
        counts = dict(con.execute("SELECT lang, count(*) FROM raw_documents GROUP BY lang").fetchall())
        shards = con.execute("SELECT count(*) FROM raw_shards").fetchone()[0]
    assert counts == {"fi": 12000, "sw": 12000, "ur": 12000} and shards == 9
