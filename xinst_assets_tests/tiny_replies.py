"""Tiny models that answer with words: a randomly initialised tiny model often greedily emits only newlines or
special tokens, which evaluation rightly reports as no answer. Tests that need an answering model (not a good
one) teach it one reply first."""

from __future__ import annotations

from pathlib import Path


def teach_reply(model_dir: str | Path, reply: str, steps: int = 40, learning_rate: float = 1e-2) -> str:
    """Train the tiny causal LM in ``model_dir`` in place, briefly, on ``reply`` repeated (no end-of-text token),
    so that after any prompt its greedy continuation is text from ``reply``; return the path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from xinst_assets.core.portable_checkpoint import make_portable

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tokenizer(" ".join([reply] * 8), return_tensors="pt", add_special_tokens=False).input_ids
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(model_dir, safe_serialization=True)
    make_portable(model_dir)
    return str(model_dir)
