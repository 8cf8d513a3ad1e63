"""Checkpoint files that load in both transformers majors (4.x and 5.x).

transformers 5 writes a few fields that 4.x does not understand, and 4.x is what vLLM releases and many serving
stacks pin. :func:`make_portable` rewrites them in place after ``save_pretrained``, keeping what 5.x writes:

* ``tokenizer_config.json``: ``"tokenizer_class": "TokenizersBackend"`` (5.x's name for a tokenizer backed by
  ``tokenizer.json``) does not exist in 4.x, whose ``AutoTokenizer`` then fails. The standard
  ``PreTrainedTokenizerFast`` is the same tokenizer in both majors. The chat template, which 5.x writes only to
  ``chat_template.jinja``, is also put into ``tokenizer_config.json`` (releases of 4.x before the separate file
  read it from there).
* ``config.json``: 5.x writes ``dtype`` and folds ``rope_theta``/``rope_scaling`` into ``rope_parameters``;
  4.x reads ``torch_dtype``, ``rope_theta`` and ``rope_scaling``, and without them silently uses defaults
  (a Llama-3 checkpoint would run with the wrong RoPE base). The 4.x keys are added beside the 5.x ones.

:func:`portability_problems` lists what would still stop 4.x (for tests and for checking a folder by hand).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Tokenizer classes that only exist in transformers 5, and the standard class that loads the same files in 4.x.
TOKENIZER_CLASS_FOR_4X = {"TokenizersBackend": "PreTrainedTokenizerFast"}
TOKENIZER_CONFIG = "tokenizer_config.json"
MODEL_CONFIG = "config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def make_portable(folder: str | Path) -> list[str]:
    """Rewrite a saved checkpoint folder so that transformers 4.x and 5.x both load it; return what changed."""
    folder = Path(folder)
    changed: list[str] = []
    tok_file = folder / TOKENIZER_CONFIG
    if tok_file.is_file():
        tok = _read(tok_file)
        before = dict(tok)
        cls = tok.get("tokenizer_class")
        if cls in TOKENIZER_CLASS_FOR_4X and (folder / "tokenizer.json").is_file():
            tok["tokenizer_class"] = TOKENIZER_CLASS_FOR_4X[cls]
            changed.append(f"tokenizer_class {cls} -> {tok['tokenizer_class']}")
        template = folder / CHAT_TEMPLATE_FILE
        if "chat_template" not in tok and template.is_file():
            tok["chat_template"] = template.read_text(encoding="utf-8")
            changed.append("chat_template copied into tokenizer_config.json")
        if tok != before:
            _write(tok_file, tok)
    cfg_file = folder / MODEL_CONFIG
    if cfg_file.is_file():
        cfg = _read(cfg_file)
        before = dict(cfg)
        _add_4x_keys(cfg, changed)
        for sub in ("text_config",):  # multimodal wrappers keep the language model's config here
            if isinstance(cfg.get(sub), dict):
                inner = dict(cfg[sub])
                _add_4x_keys(inner, changed)
                cfg[sub] = inner
        if cfg != before:
            _write(cfg_file, cfg)
    return changed


def _add_4x_keys(cfg: dict[str, Any], changed: list[str]) -> None:
    if "dtype" in cfg and "torch_dtype" not in cfg:
        cfg["torch_dtype"] = cfg["dtype"]
        changed.append("torch_dtype added")
    rope = cfg.get("rope_parameters")
    # A flat rope_parameters ({"rope_type": ..., "rope_theta": ..., ...}); per-layer-type dicts (sliding vs full
    # attention) have no single 4.x spelling and are left as they are.
    if isinstance(rope, dict) and "rope_type" in rope:
        if "rope_theta" in rope and "rope_theta" not in cfg:
            cfg["rope_theta"] = rope["rope_theta"]
            changed.append("rope_theta added")
        if "rope_scaling" not in cfg:
            scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
            cfg["rope_scaling"] = None if rope.get("rope_type") == "default" else scaling
            changed.append("rope_scaling added")


def portability_problems(folder: str | Path) -> list[str]:
    """What in a checkpoint folder transformers 4.x would fail on or read wrongly (empty: portable)."""
    folder = Path(folder)
    problems: list[str] = []
    tok_file = folder / TOKENIZER_CONFIG
    if not tok_file.is_file():
        problems.append(f"no {TOKENIZER_CONFIG}")
    else:
        tok = _read(tok_file)
        cls = tok.get("tokenizer_class")
        if cls in TOKENIZER_CLASS_FOR_4X:
            problems.append(f"tokenizer_class {cls} exists only in transformers 5")
        if (folder / CHAT_TEMPLATE_FILE).is_file() and "chat_template" not in tok:
            problems.append("chat template only in chat_template.jinja")
    cfg_file = folder / MODEL_CONFIG
    if not cfg_file.is_file():
        problems.append(f"no {MODEL_CONFIG}")
    else:
        cfg = _read(cfg_file)
        if "dtype" in cfg and "torch_dtype" not in cfg:
            problems.append("dtype without torch_dtype")
        rope = cfg.get("rope_parameters")
        if isinstance(rope, dict) and "rope_type" in rope:
            if "rope_theta" in rope and cfg.get("rope_theta") != rope["rope_theta"]:
                problems.append("rope_theta missing or different from rope_parameters")
            if rope.get("rope_type") != "default" and not cfg.get("rope_scaling"):
                problems.append(f"rope_scaling missing for rope_type {rope.get('rope_type')}")
    return problems


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
