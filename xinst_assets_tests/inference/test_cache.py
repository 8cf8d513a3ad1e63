"""The generation cache: one lookup, model calls only for misses, short writes, resumable after a crash."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from xinst_assets.core.prompts import JUDGE_CHOICES, DecodingParams, greedy, judge_prompt
from xinst_assets.inference.cache import (
    TABLE,
    CachedBackend,
    GenerationCache,
    choice_logprobs_cached,
    generate_cached,
)
from xinst_assets.inference.transformers_backend import TransformersBackend
from xinst_assets.resources.warehouse import Warehouse
from xinst_assets_tests.inference.conftest import PAIRS, PROMPTS, CountingBackend

PARAMS = greedy(6)


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(path=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=5)


def test_a_rerun_is_served_from_the_cache_with_zero_model_calls(
    backend: TransformersBackend, warehouse: Warehouse
) -> None:
    counting = CountingBackend(backend)
    with GenerationCache.from_warehouse(warehouse) as cache:
        first, stats = generate_cached(counting, cache, PROMPTS, PARAMS, task="test")
    assert (stats.hits, stats.misses, stats.stored, counting.calls) == (0, len(PROMPTS), len(PROMPTS), 1)
    counting.calls = 0
    with GenerationCache.from_warehouse(warehouse) as cache:
        again, stats = generate_cached(counting, cache, PROMPTS, PARAMS, task="test")
    assert counting.calls == 0
    assert (stats.hits, stats.misses, stats.backend_calls, stats.stored) == (len(PROMPTS), 0, 0, 0)
    assert again == first
    assert first == backend.generate(PROMPTS, PARAMS)


def test_repeated_prompts_are_generated_once_and_answered_everywhere(
    backend: TransformersBackend, warehouse: Warehouse
) -> None:
    counting = CountingBackend(backend)
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[0]]
    outputs, stats = generate_cached(counting, GenerationCache.from_warehouse(warehouse), prompts, PARAMS, "test")
    assert counting.prompts == 2 and (stats.requested, stats.unique) == (4, 2)
    assert outputs[0] == outputs[2] == outputs[3]


def test_another_task_params_or_model_is_a_miss(backend: TransformersBackend, warehouse: Warehouse) -> None:
    counting = CountingBackend(backend)
    cache = GenerationCache.from_warehouse(warehouse)
    generate_cached(counting, cache, PROMPTS[:2], PARAMS, "task_a")
    _, other_task = generate_cached(counting, cache, PROMPTS[:2], PARAMS, "task_b")
    _, other_params = generate_cached(counting, cache, PROMPTS[:2], greedy(7), "task_a")
    assert other_task.misses == 2 and other_params.misses == 2

    class OtherModel(CountingBackend):
        def fingerprint(self) -> str:
            return "another-model"

    _, other_model = generate_cached(OtherModel(backend), cache, PROMPTS[:2], PARAMS, "task_a")
    assert other_model.misses == 2


def test_results_are_written_every_flush_every_and_a_crash_keeps_the_finished_chunks(
    backend: TransformersBackend, warehouse: Warehouse
) -> None:
    crashing = CountingBackend(backend, fail_on_call=3)
    cache = GenerationCache.from_warehouse(warehouse, flush_every=2)
    with pytest.raises(RuntimeError, match="simulated crash"), cache:
        generate_cached(crashing, cache, PROMPTS, PARAMS, "test")
    assert cache.writes == 2  # two chunks of 2 finished and were written before the third call crashed
    with warehouse.read() as con:
        assert con.execute(f"SELECT count(*), min(task), min(model) FROM {TABLE}").fetchone() == (
            4, "test", backend.fingerprint(),
        )
    resumed = CountingBackend(backend)
    outputs, stats = generate_cached(resumed, GenerationCache.from_warehouse(warehouse, flush_every=2), PROMPTS,
                                     PARAMS, "test")
    assert (stats.hits, stats.misses, resumed.prompts) == (4, 1, 1)
    assert outputs == backend.generate(PROMPTS, PARAMS)


def test_the_warehouse_lock_is_free_while_the_model_works(backend: TransformersBackend, warehouse: Warehouse) -> None:
    observed: list[bool] = []

    class ProbingBackend(CountingBackend):
        def generate(self, prompts, params):
            def probe() -> None:  # another thread opens its own lock file descriptor, like another process
                try:
                    with Warehouse(path=warehouse.path, lock_timeout_s=0.2).write():
                        observed.append(True)
                except TimeoutError:
                    observed.append(False)

            thread = threading.Thread(target=probe)
            thread.start()
            thread.join()
            return super().generate(prompts, params)

    generate_cached(ProbingBackend(backend), GenerationCache.from_warehouse(warehouse, flush_every=2), PROMPTS,
                    PARAMS, "test")
    assert observed == [True, True, True]


def test_empty_and_cut_outputs_round_trip_through_the_cache(warehouse: Warehouse) -> None:
    from xinst_assets.inference.base import Generation

    class FixedBackend:
        calls = 0

        def generate(self, prompts, params):
            FixedBackend.calls += 1
            return [Generation("", "stop", 3, 1), Generation("ulang ulang ulang", "length", 2, 4)][: len(prompts)]

        def choice_logprobs(self, prompts, choices):
            raise AssertionError("not used")

        def fingerprint(self) -> str:
            return "fixed"

        def close(self) -> None:
            pass

    cache = GenerationCache.from_warehouse(warehouse)
    first, _ = generate_cached(FixedBackend(), cache, ["a", "b"], DecodingParams(max_new_tokens=4), "test")
    again, stats = generate_cached(FixedBackend(), cache, ["a", "b"], DecodingParams(max_new_tokens=4), "test")
    assert again == first and first[0].text == "" and first[1].finish_reason == "length"
    assert FixedBackend.calls == 1 and stats.hits == 2


def test_choice_distributions_are_cached_like_generations(backend: TransformersBackend, warehouse: Warehouse) -> None:
    prompts = [judge_prompt(i, r, "Indonesian") for i, r in PAIRS]
    counting = CountingBackend(backend)
    cache = GenerationCache.from_warehouse(warehouse)
    first, _ = choice_logprobs_cached(counting, cache, prompts, JUDGE_CHOICES, "judge")
    again, stats = choice_logprobs_cached(counting, cache, prompts, JUDGE_CHOICES, "judge")
    assert counting.calls == 1 and stats.hits == len(prompts)
    assert again == first == backend.choice_logprobs(prompts, list(JUDGE_CHOICES))


def test_a_cached_backend_keeps_the_contract_and_adds_up_its_stats(
    backend: TransformersBackend, warehouse: Warehouse
) -> None:
    counting = CountingBackend(backend)
    cached = CachedBackend(counting, GenerationCache.from_warehouse(warehouse), task="test")
    cached.generate(PROMPTS, PARAMS)
    cached.generate(PROMPTS, PARAMS)
    assert (cached.stats.hits, cached.stats.misses, counting.calls) == (len(PROMPTS), len(PROMPTS), 1)
    assert cached.fingerprint() == backend.fingerprint()


def test_an_in_memory_cache_and_no_cache_both_work(backend: TransformersBackend) -> None:
    counting = CountingBackend(backend)
    generate_cached(counting, None, PROMPTS[:2], PARAMS, "test")
    generate_cached(counting, None, PROMPTS[:2], PARAMS, "test")
    assert counting.calls == 2
    memory = GenerationCache.in_memory()
    generate_cached(counting, memory, PROMPTS[:2], PARAMS, "test")
    _, stats = generate_cached(counting, memory, PROMPTS[:2], PARAMS, "test")
    assert counting.calls == 3 and stats.hits == 2
