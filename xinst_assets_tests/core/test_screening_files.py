"""Screening staged files: the same verdicts and signatures on one process or on a pool of them."""

import dataclasses
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import xinst_assets.core.screening_files as screening_files
from xinst_assets.core.filtering import FilterSettings
from xinst_assets.core.screening_files import BATCH_DOCS, ScreeningJob, screen_files, started_ahead
from xinst_assets.settings import SAMPLE_DIR


def _jobs(tmp_path, registry, folder: str, min_words: int | None = None) -> list[ScreeningJob]:
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
        settings = FilterSettings.for_language(lang)
        if min_words is not None:
            settings = dataclasses.replace(settings, quality=dataclasses.replace(settings.quality, min_words=min_words))
        jobs.append(ScreeningJob(lang, settings, pending, pending.with_suffix(".out")))
    return jobs


def _same_output(expected: list[ScreeningJob], got: list[ScreeningJob]) -> None:
    for one, other in zip(expected, got):
        assert pq.read_table(other.out).equals(pq.read_table(one.out)), one.lang.code


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


def test_a_pool_started_ahead_serves_later_calls_each_with_its_own_settings(tmp_path, registry, identifier,
                                                                            monkeypatch):
    started: list[int] = []

    class CountedPool(screening_files.ScreeningPool):
        def __init__(self, *args, **kwargs):
            started.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(screening_files, "ScreeningPool", CountedPool)
    alone, strict_alone = _jobs(tmp_path, registry, "alone"), _jobs(tmp_path, registry, "strict-alone", min_words=120)
    screen_files(alone, identifier, registry, workers=1)
    screen_files(strict_alone, identifier, registry, workers=1)
    assert started == []  # one process: no pool

    with started_ahead(2, identifier.model_path, registry) as pool:
        assert started == [2]
        default, strict = _jobs(tmp_path, registry, "ahead"), _jobs(tmp_path, registry, "strict-ahead", min_words=120)
        screen_files(default, identifier, registry, workers=2, min_pool_docs=0)
        # The same workers, whose screeners of the first call must not serve the second (other thresholds).
        screen_files(strict, identifier, registry, workers=2, min_pool_docs=0)
        assert started == [2]
        # Another number of workers is another pool, of the call's own.
        three = _jobs(tmp_path, registry, "three")
        screen_files(three, identifier, registry, workers=3, min_pool_docs=0)
        assert started == [2, 3]
    with pytest.raises(RuntimeError):  # closed with the block
        pool.executor.submit(os.getpid)
    _same_output(alone, default)
    _same_output(strict_alone, strict)
    _same_output(alone, three)
    kept = [pq.read_table(job.out).column("reject_reason").null_count for job in (alone[0], strict_alone[0])]
    assert 0 < kept[1] < kept[0]  # the stricter settings did apply
