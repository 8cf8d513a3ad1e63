"""Fixtures for the training tests: small instruction rows and translation pairs, and one tiny model."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from xinst_assets.core.tiny_model import build_tiny_model

INSTRUCTION_ROWS: list[dict[str, Any]] = [
    {
        "instruction": "Write a short note about the morning market.",
        "lang_name": "Indonesian",
        "refined": False,
        "response": "Pasar pagi di desa kami selalu ramai. Para pedagang menjual sayur, ikan dan kue sejak subuh.",
    },
    {
        "instruction": "Explain why people should drink enough water.",
        "lang_name": "Indonesian",
        "refined": True,
        "response": "Tubuh kita membutuhkan air untuk mengatur suhu dan membantu pencernaan. Minumlah air secara teratur.",
    },
    {
        "instruction": "Describe a rainy afternoon in the city.",
        "lang_name": "Vietnamese",
        "refined": False,
        "response": "Buổi chiều mưa, đường phố vắng hơn. Mọi người trú mưa dưới mái hiên và uống trà nóng.",
    },
    {
        "instruction": "Give two tips for saving money.",
        "lang_name": "Vietnamese",
        "refined": True,
        "response": "Thứ nhất, hãy ghi lại mọi khoản chi tiêu. Thứ hai, hãy nấu ăn ở nhà thay vì ăn ngoài.",
    },
    {
        "instruction": "Summarize the news about the new bridge.",
        "lang_name": "Indonesian",
        "refined": False,
        "response": "Jembatan baru itu dibuka kemarin. Warga kini bisa menyeberang sungai tanpa perahu.",
    },
    {
        "instruction": "Write a greeting for a school event.",
        "lang_name": "Vietnamese",
        "refined": False,
        "response": "Kính chào quý thầy cô và các em học sinh đến dự buổi lễ hôm nay.",
    },
]

PARALLEL_ROWS: list[dict[str, str]] = [
    {"en": "The market opens every morning at six.", "text": "Pasar buka setiap pagi pukul enam."},
    {"en": "Heavy rain flooded the village road.", "text": "Hujan deras membanjiri jalan desa."},
    {"en": "Please close the door when you leave.", "text": "Tolong tutup pintu saat kamu pergi."},
    {"en": "My sister studies medicine in the city.", "text": "Kakak saya belajar kedokteran di kota."},
    {"en": "The bus to the airport is late today.", "text": "Bus ke bandara terlambat hari ini."},
    {"en": "We planted rice in the field last week.", "text": "Kami menanam padi di sawah minggu lalu."},
    {
        "en": "The children are playing football outside.",
        "text": "Anak-anak sedang bermain sepak bola di luar.",
    },
    {"en": "This soup tastes a little too salty.", "text": "Sup ini rasanya sedikit terlalu asin."},
]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama (hidden 64, 2 layers) with a tokenizer trained on the rows above."""
    texts = [r["instruction"] + " " + r["response"] for r in INSTRUCTION_ROWS]
    texts += [r["en"] + " " + r["text"] for r in PARALLEL_ROWS]
    texts += ["Below is an instruction that describes a task. Write a response. Answer in English."]
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny") / "model", texts * 4, hidden_size=64, num_layers=2
    )


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def instruction_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "data" / "train.jsonl", INSTRUCTION_ROWS)


@pytest.fixture
def parallel_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "data" / "parallel_id.jsonl", PARALLEL_ROWS)
