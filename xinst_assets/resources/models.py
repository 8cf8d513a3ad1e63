"""Which models the pipeline trains and uses, and the demo model when none is given."""

from __future__ import annotations

import json
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from xinst_assets.core.tiny_model import build_tiny_model
from xinst_assets.resources.warehouse import file_lock
from xinst_assets.settings import SAMPLE_DIR

DEMO_MODEL_NOTE = (
    "no base_model configured: using a tiny randomly initialised Llama-architecture model built locally "
    "(demo only; its outputs carry no meaning until trained). Set ModelSettings.base_model to a real model."
)


class ModelSettings(ConfigurableResource):
    """Models of the pipeline: the base checkpoint to fine-tune, the instruction-following model that curates
    and judges by default, and how the instruction generator is made. Each role's model and backend is its own
    resource (``curator``, ``refiner``, ``answer_model``, ``judge``; see xinst_assets/assets/model_roles.py)."""

    base_model: str | None = Field(
        default=None, description="Local folder or hub id of the base causal LM (None: a tiny demo model)."
    )
    instruct_model: str | None = Field(
        default=None, description="Instruction-following model (local folder or hub id) that curates, refines "
        "and judges unless those roles name their own (None: a recorded curator checkpoint, else the base model)."
    )
    generator_mode: str = Field(
        default="trained", description="trained (fine-tune base_model on seed pairs, response -> instruction) "
        "| zero_shot (use zero_shot_model with the same prompt)."
    )
    zero_shot_model: str | None = Field(default=None, description="Instruct model for zero_shot mode.")
    generator_max_steps: int | None = Field(default=None, description="Generator training steps (None: epochs).")
    generator_epochs: float = Field(default=3.0, description="Generator training epochs.")
    generator_learning_rate: float | None = Field(default=None, description="None: the trainer's default.")
    generator_batch_size: int = Field(default=8, description="Per-device batch size for generator training.")
    curator_max_steps: int | None = Field(
        default=None, description="Training steps of the curator checkpoint (tuned on seed judgements when no "
        "instruction-following curator is configured; None: epochs, or 150 steps for the demo model).")
    curator_epochs: float = Field(default=3.0, description="Curator training epochs (when max_steps is None).")
    curator_learning_rate: float | None = Field(default=None, description="None: the trainer's default.")
    curator_batch_size: int = Field(default=8, description="Per-device batch size for curator training.")
    curator_seed: int = Field(default=0, description="Seed of the curator's judgements, held-out split and training.")
    demo_hidden_size: int = Field(default=128, description="Width of the tiny demo model.")

    def resolve_base_model(self, models_dir: Path, log=None) -> str:
        """The base model to train from: the configured one, or the tiny demo model (built once)."""
        if self.base_model:
            return self.base_model
        if log is not None:
            log(DEMO_MODEL_NOTE)
        out = models_dir / f"demo-base-h{self.demo_hidden_size}"
        with file_lock(models_dir / ".demo-base.lock", exclusive=True, timeout_s=600):
            if not (out / "config.json").exists():
                # 8k positions: a tiny tokenizer spends about a token per character on Indic scripts.
                build_tiny_model(out, _sample_texts(), hidden_size=self.demo_hidden_size, num_layers=2,
                                 num_heads=4, vocab_size=4096, max_positions=8192)
        return str(out)


def _sample_texts() -> list[str]:
    """Text to train the demo tokenizer on: English instructions and every language of the sample."""
    texts = []
    for path in sorted(SAMPLE_DIR.glob("*/*.jsonl")) + sorted(SAMPLE_DIR.glob("raw/*/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            texts += [v for v in row.values() if isinstance(v, str) and len(v) > 3]
    return texts
