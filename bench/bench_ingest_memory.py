"""Peak memory of raw ingestion on hostile shards, and the time of shard discovery over symlink loops.

    .venv/bin/python bench/bench_ingest_memory.py [--line-mb 200] [--url-mb 50] [--records 300000]

Every case runs in a fresh Python process, which reports its own peak resident set size (``VmHWM`` of
/proc/self/status: unlike ``ru_maxrss`` it starts afresh at exec, so the bench's own memory never counts). Each
case stages one shard with ``stage_shard`` (the code the ``raw_web_text`` asset runs), side by side with the
previous reader's ``stage_shard`` (``xinst_assets/core/ingest.py`` at ``--baseline-rev``, read from git: it
read each line whole, then decoded and parsed it), and beside a process that only imports the reader (the
floor). The cases:

* ``gzip bomb``: a ~200 KB gzip that expands to one line of ``--line-mb`` MB (a JSON record whose text is
  that long), between two normal records;
* ``huge url``: a JSONL record with a short text and a ``--url-mb`` MB url;
* ``many small records``: ``--records`` records of about 300 bytes (throughput is printed too);
* ``parquet huge cell``: a Parquet file with one ``--line-mb`` MB text cell between normal rows;
* ``parquet one row group``: ``--records`` rows in a single row group.

Discovery: a language folder with 2,000 shards in 20 sub-folders and two loops (``a -> .``, ``b -> .``) is
listed by ``discover_shards`` and, side by side, by the previous discovery (``glob.glob('<lang>/**/*',
recursive=True)``) in a subprocess stopped after 10 s.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

PEAK = """
def peak_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
"""

# argv: module to import stage_shard from ("" = the current reader, else a file), shard, output folder
STAGE = PEAK + """
import importlib.util, sys, time
from pathlib import Path
if sys.argv[1]:
    spec = importlib.util.spec_from_file_location("previous_ingest", sys.argv[1])
    reader = importlib.util.module_from_spec(spec)
    sys.modules["previous_ingest"] = reader  # its dataclasses look their module up
    spec.loader.exec_module(reader)
else:
    from xinst_assets.core import ingest as reader
path, out = sys.argv[2], Path(sys.argv[3])
start = time.perf_counter()
stats = reader.stage_shard(reader.Shard.of(path), "sw", out / "docs.parquet", out / "bad.parquet")
seconds = time.perf_counter() - start
reasons = dict(stats.quarantined)
files = sorted({reason for reason, _ in getattr(stats, "file_issues", [])})  # file-level rows (new reader)
print(peak_kb(), seconds, stats.rows, sum(reasons.values()),
      ",".join(sorted(reasons) + [f"file:{r}" for r in files]) or "-")
"""

FLOOR = PEAK + """
import xinst_assets.core.ingest
print(peak_kb(), 0, 0, 0, "-")
"""


def run(code: str, *args: str, timeout: float = 900) -> tuple[float, float, int, int, str]:
    """Run ``code`` in a fresh interpreter; (peak RSS MB, seconds, rows, quarantined, reasons)."""
    result = subprocess.run([PYTHON, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    rss_kb, seconds, rows, bad, reasons = result.stdout.split()[-5:]
    return int(rss_kb) / 1024, float(seconds), int(rows), int(bad), reasons


def normal(i: int) -> bytes:
    return json.dumps({"text": f"Habari namba {i} kutoka kijijini, siku njema kwa wote.",
                       "url": f"https://a.example/{i}", "timestamp": "2024-01-01T00:00:00Z",
                       "source": "bench", "id": f"b-{i}"}).encode() + b"\n"


def write_gzip_bomb(path: Path, megabytes: int) -> None:
    chunk = b"a" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(normal(0))
        out.write(b'{"text": "')
        for _ in range(megabytes):
            out.write(chunk)
        out.write(b'"}\n')
        out.write(normal(1))


def write_huge_url(path: Path, megabytes: int) -> None:
    with open(path, "wb") as out:
        out.write(normal(0))
        out.write(b'{"text": "Maandishi mafupi.", "url": "https://x.example/')
        for _ in range(megabytes):
            out.write(b"u" * (1 << 20))
        out.write(b'"}\n')
        out.write(normal(1))


def write_many(path: Path, records: int) -> None:
    with open(path, "wb") as out:
        for i in range(records):
            out.write(normal(i))


def write_parquet_cell(path: Path, megabytes: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["Habari njema.", "a" * (megabytes << 20), "Karibu tena."]
    pq.write_table(pa.table({"text": texts}), path)


def write_parquet_group(path: Path, records: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"Habari namba {i} kutoka kijijini, siku njema kwa wote. " * 4 for i in range(records)]
    pq.write_table(pa.table({"text": texts, "id": [f"b-{i}" for i in range(records)]}), path,
                   row_group_size=records)


def previous_reader(folder: Path, rev: str) -> str | None:
    """The previous reader's module, written to a file from git (None when git cannot show it)."""
    result = subprocess.run(["git", "show", f"{rev}:xinst_assets/core/ingest.py"], capture_output=True, text=True,
                            cwd=ROOT)
    if result.returncode != 0:
        print(f"(no baseline: git cannot show xinst_assets/core/ingest.py at {rev})")
        return None
    path = folder / "previous_ingest.py"
    path.write_text(result.stdout)
    return str(path)


def memory_cases(folder: Path, args: argparse.Namespace) -> None:
    cases = [
        ("gzip bomb", folder / "bomb.jsonl.gz", lambda p: write_gzip_bomb(p, args.line_mb)),
        ("huge url", folder / "url.jsonl", lambda p: write_huge_url(p, args.url_mb)),
        ("many small records", folder / "many.jsonl", lambda p: write_many(p, args.records)),
        ("parquet huge cell", folder / "cell.parquet", lambda p: write_parquet_cell(p, args.line_mb)),
        ("parquet one row group", folder / "group.parquet", lambda p: write_parquet_group(p, args.records)),
    ]
    previous = previous_reader(folder, args.baseline_rev)
    readers = [("new", "")] + ([(f"{args.baseline_rev}", previous)] if previous else [])
    floor = run(FLOOR)[0]
    print(f"floor (interpreter + pyarrow + the reader imported): {floor:.0f} MB peak RSS\n")
    print(f"{'case':<24}{'input':>12}  {'reader':<9}{'peak RSS':>10}{'time':>9}{'rows':>9}{'quar.':>7}  reasons")
    for name, path, write in cases:
        write(path)
        size = path.stat().st_size
        for label, module in readers:
            out = Path(tempfile.mkdtemp(dir=folder))
            try:
                rss, seconds, rows, bad, reasons = run(STAGE, module, str(path), str(out), timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"{name:<24}{size / 1e6:>10.2f}MB  {label:<9}  did not finish in {args.timeout} s")
                continue
            except RuntimeError as exc:
                last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "killed"
                print(f"{name:<24}{size / 1e6:>10.2f}MB  {label:<9}  failed: {last[:80]}")
                continue
            rate = f"  {rows / seconds:,.0f} rows/s" if rows > 1000 else ""
            print(f"{name:<24}{size / 1e6:>10.2f}MB  {label:<9}{rss:>8.0f}MB{seconds:>8.2f}s{rows:>9,}{bad:>7}  "
                  f"{reasons}{rate}")
        path.unlink()


GLOB = """
import glob, os, sys
print(len(glob.glob(os.path.join(sys.argv[1], "sw", "**", "*"), recursive=True)))
"""


def discovery_case(folder: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from xinst_assets.core.discovery import discover_shards

    lang = folder / "raw" / "sw"
    for d in range(20):
        sub = lang / f"part{d:02d}"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"shard-{i:03d}.jsonl").write_bytes(normal(i))
    (lang / "a").symlink_to(".")
    (lang / "b").symlink_to(".")
    start = time.perf_counter()
    found = discover_shards([str(folder / "raw")], "sw")
    seconds = time.perf_counter() - start
    loops = sum(s.reason == "link_loop" for s in found.skipped)
    print(f"\ndiscovery, 2,000 shards and two loops (a -> ., b -> .): new {seconds:.2f} s, "
          f"{len(found.shards):,} shards listed once each, {loops} loops reported")
    start = time.perf_counter()
    try:
        result = subprocess.run([PYTHON, "-c", GLOB, str(folder / "raw")], capture_output=True, text=True,
                                timeout=10)
        print(f"previous discovery (recursive glob): {time.perf_counter() - start:.2f} s, "
              f"{result.stdout.strip()} paths (the same files under many looped paths)")
    except subprocess.TimeoutExpired:
        print("previous discovery (recursive glob): not finished after 10 s (stopped)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--line-mb", type=int, default=200)
    parser.add_argument("--url-mb", type=int, default=50)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--baseline-rev", default="70fec61", help="git revision of the previous reader")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed to each case's process")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    print(textwrap.dedent(f"""\
        python {sys.version.split()[0]}, {os.cpu_count()} CPUs; every case in a fresh process
        """))
    with tempfile.TemporaryDirectory(prefix="xinst-bench-ingest-") as tmp:
        if not args.skip_memory:
            memory_cases(Path(tmp), args)
        discovery_case(Path(tmp))


if __name__ == "__main__":
    main()
