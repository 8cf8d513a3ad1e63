"""Fixtures for the inference tests: one tiny real model, its backend and a local OpenAI-compatible server.

Everything heavy is session-scoped: the model is built once (well under a second), loaded once, served once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from xinst_assets.core.prompts import (
    DecodingParams,
    generation_prompt,
    judge_prompt,
    refine_prompt,
    response_prompt,
)
from xinst_assets.core.tiny_model import build_tiny_model
from xinst_assets.inference.base import Generation, ModelSpec
from xinst_assets.inference.transformers_backend import TransformersBackend
from xinst_assets_tests.inference.openai_server import OpenAICompatibleServer

PAIRS: list[tuple[str, str]] = [
    ("Write a short news item about the village market.",
     "Pasar pagi di desa kami selalu ramai. Para pedagang menjual sayur, ikan dan kue sejak subuh."),
    ("Explain why people should drink enough water.",
     "Tubuh kita membutuhkan air untuk mengatur suhu dan membantu pencernaan."),
    ("Give two tips for saving money.",
     "Menu | Beranda | Kontak. Thứ nhất, hãy ghi lại mọi khoản chi tiêu. Bagikan ke Facebook."),
    ("Describe a rainy afternoon in the city.", "Cookie policy. Accept all cookies."),
]

# Prompts of clearly different lengths (so a batch needs padding).
PROMPTS: list[str] = [
    "Pasar",
    generation_prompt(PAIRS[0][1]),
    "Tubuh kita membutuhkan air.",
    response_prompt(PAIRS[1][0], "Indonesian"),
    "Hujan",
]


def _corpus() -> list[str]:
    texts = [a + " " + b for a, b in PAIRS]
    texts += [judge_prompt(a, b, "Indonesian") for a, b in PAIRS]
    texts += [refine_prompt(a, b, "Indonesian") for a, b in PAIRS]
    texts += ["1 2 3 1. 2. 3. rating 1, 2 or 3"]
    return texts * 4


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama (hidden 64, 2 layers, byte-level BPE of ~1k tokens), random weights."""
    return build_tiny_model(tmp_path_factory.mktemp("inference") / "tiny", _corpus(), hidden_size=64, num_layers=2)


@pytest.fixture(scope="session")
def backend(tiny_model_dir: Path) -> Iterator[TransformersBackend]:
    """The tiny model on CPU in float32, 2 prompts per batch (so 5 prompts make 3 batches)."""
    loaded = TransformersBackend(ModelSpec(str(tiny_model_dir), device="cpu"), batch_size=2, num_threads=1)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def chat_backend(tiny_model_dir: Path) -> Iterator[TransformersBackend]:
    """The same tiny model, prompts laid out by its chat template (what a chat server does with messages)."""
    loaded = TransformersBackend(ModelSpec(str(tiny_model_dir), device="cpu"), batch_size=2, num_threads=1, chat=True)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def server(backend: TransformersBackend) -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer(backend) as running:
        yield running


@pytest.fixture
def live_server(server: OpenAICompatibleServer) -> OpenAICompatibleServer:
    """The shared server with failures, delays, API key and request log reset for this test."""
    server.reset()
    return server


class CountingBackend:
    """A thin wrapper around a real backend that counts the calls and prompts that reach it."""

    def __init__(self, inner: TransformersBackend, fail_on_call: int | None = None) -> None:
        self.inner, self.fail_on_call = inner, fail_on_call
        self.calls = 0
        self.prompts = 0

    def _count(self, prompts: list[str]) -> None:
        self.calls += 1
        self.prompts += len(prompts)
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise RuntimeError(f"simulated crash on backend call {self.calls}")

    def generate(self, prompts: list[str], params: DecodingParams) -> list[Generation]:
        self._count(prompts)
        return self.inner.generate(prompts, params)

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float]]:
        self._count(prompts)
        return self.inner.choice_logprobs(prompts, choices)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def close(self) -> None:
        pass
