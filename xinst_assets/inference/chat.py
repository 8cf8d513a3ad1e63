"""Prompts as chat messages: the chat template of a local model, and whether a model has one.

An instruction-following model (the curator, the refiner, the judge) was tuned on conversations laid out by its
chat template; sending it the bare prompt text makes it continue a document instead of answering. Every xinst
prompt is one user turn; the model's answer starts right after the template's generation prompt (for the
constrained-choice prompts, the label is the first token of the assistant's turn).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xinst_assets.inference.base import InferenceError, ModelSpec, _cached_hub_file

CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def chat_messages(prompt: str) -> list[dict[str, str]]:
    """One xinst prompt as the messages of a chat request: a single user turn."""
    return [{"role": "user", "content": prompt}]


def chat_prompt(tokenizer: Any, prompt: str) -> str:
    """``prompt`` laid out by ``tokenizer``'s chat template as a user turn, ending where the assistant writes."""
    if not getattr(tokenizer, "chat_template", None):
        raise InferenceError(
            "chat formatting was asked for, but this model's tokenizer has no chat template; set the role's "
            "chat: false to send the raw prompt, or point the role at an instruction-tuned model"
        )
    return tokenizer.apply_chat_template(chat_messages(prompt), tokenize=False, add_generation_prompt=True)


def continued_chat_prompt(tokenizer: Any, prompt: str, answer_start: str) -> str:
    """The chat prompt with the assistant's turn already begun by ``answer_start`` (no end-of-turn after it)."""
    messages = chat_messages(prompt) + [{"role": "assistant", "content": answer_start}]
    return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)


def has_chat_template(spec: ModelSpec) -> bool:
    """Whether the checkpoint named by ``spec`` ships a chat template (read from its files, nothing loaded)."""
    if spec.is_local:
        folder = spec.local_path
        assert folder is not None
        if any((folder / name).is_file() for name in CHAT_TEMPLATE_FILES):
            return True
        return _config_has_template(folder / "tokenizer_config.json")
    for name in CHAT_TEMPLATE_FILES:
        if _cached_hub_file(spec.model, name, spec.revision) is not None:
            return True
    cached = _cached_hub_file(spec.model, "tokenizer_config.json", spec.revision)
    return cached is not None and _config_has_template(Path(cached))


def _config_has_template(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError):
        return False
