"""Screening staged files: the same verdicts and signatures on one process or on a pool of them."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from xinst_assets.core.filtering import FilterSettings
from xinst_assets.core.screening_files import BATCH_DOCS, ScreeningJob, screen_files
from xinst_assets.settings import SAMPLE_DIR


def _jobs(tmp_path, registry, folder: str) -> list[ScreeningJob]:
    jobs = []
    for code in ("sw", "fi"):
        lines = (SAMPLE_DIR / "raw" / code / "part-00000.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines]
        # More than one batch, so that batches of one language go to different workers.
        docs = [{"doc_id": f"{code}-{i:05d}", "text": rows[i % len(rows)]["text"] + f" {i}", "published_at": None}
                for i in range(BATCH_DOCS + 300)]
        pending = tmp_path / folder / f"{code}.pending.parquet"
        pending.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(docs, schema=pa.schema(
            [("doc_id", pa.string()), ("text", pa.string()), ("published_at", pa.string())])), pending)
        lang = registry.get(code)
        jobs.append(ScreeningJob(lang, FilterSettings.for_language(lang), pending, pending.with_suffix(".out")))
    return jobs


def test_a_pool_of_workers_screens_exactly_as_one_process(tmp_path, registry, identifier):
    alone, pooled = _jobs(tmp_path, registry, "alone"), _jobs(tmp_path, registry, "pooled")
    counted: list[int] = []
    screen_files(alone, identifier, registry, workers=1)
    screen_files(pooled, identifier, registry, workers=2, on_rows=counted.append, min_pool_docs=0)
    assert sum(counted) == 2 * (BATCH_DOCS + 300) and len(counted) == 4  # two batches per language
    for one, many in zip(alone, pooled):
        expected, got = pq.read_table(one.out), pq.read_table(many.out)
        assert got.num_rows == BATCH_DOCS + 300
        assert got.equals(expected), one.lang.code
        kept = got.filter(pa.compute.is_null(got.column("reject_reason")))
        assert kept.num_rows > 0 and kept.column("minhash").null_count == 0
