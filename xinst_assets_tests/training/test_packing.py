"""Packing: blocks never split examples, and no example attends to or is predicted from another."""

from __future__ import annotations

import pytest
import torch

from xinst_assets.training.data import (
    IGNORE_INDEX,
    PackedCollator,
    PackedDataset,
    PadCollator,
    TextExample,
    pack_lengths,
    response_prompt,
    tokenize_examples,
)
from xinst_assets_tests.training.conftest import INSTRUCTION_ROWS


def _dataset(tokenizer, max_length=512):
    examples = [
        TextExample(response_prompt(r["instruction"], r["lang_name"]), r["response"])
        for r in INSTRUCTION_ROWS
    ]
    dataset, stats = tokenize_examples(tokenizer, examples, max_length)
    assert stats["kept"] == len(INSTRUCTION_ROWS)
    return dataset


def _model(path, attn):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn, dtype=torch.float64).eval()
    model.config.use_cache = False
    return model


def _summed_loss(model, batch) -> float:
    """Sum of token losses of a batch (``num_items_in_batch=1`` turns the mean into a sum)."""
    batch = {k: v for k, v in batch.items() if k != "real_tokens"}
    with torch.no_grad():
        return float(model(**batch, use_cache=False, num_items_in_batch=1).loss)


def test_pack_lengths_uses_every_example_once_and_never_overfills_a_block():
    lengths = [300, 212, 500, 12, 256, 256, 100, 400]
    blocks = pack_lengths(lengths, 512)
    assert sorted(i for block in blocks for i in block) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in block) <= 512 for block in blocks)
    # 2,036 tokens need at least 4 blocks of 512; best-fit decreasing finds such a packing here.
    assert len(blocks) == 4
    assert pack_lengths(lengths, 512) == blocks  # deterministic
    with pytest.raises(ValueError, match="more than max_length"):
        pack_lengths([513], 512)


def test_a_packed_block_restarts_positions_and_masks_the_first_label_of_each_example(tokenizer):
    dataset = _dataset(tokenizer)
    packed = PackedDataset(dataset, max_length=512)
    assert len(packed) < len(dataset)
    for index, block in enumerate(packed.blocks):
        item = packed[index]
        start = 0
        for example in block:
            n = int(dataset.lengths[example])
            assert item["position_ids"][start : start + n].tolist() == list(range(n))
            assert item["input_ids"][start : start + n].tolist() == dataset[example]["input_ids"].tolist()
            assert item["labels"][start] == IGNORE_INDEX
            assert item["labels"][start + 1 : start + n].tolist() == dataset[example]["labels"][1:].tolist()
            start += n
        assert start == len(item["input_ids"])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("flatten", [False, True], ids=["one-row-per-block", "flattened"])
def test_the_loss_of_a_packed_batch_equals_the_sum_of_per_example_losses(
    tiny_model_dir, tokenizer, attn, flatten
):
    model = _model(tiny_model_dir, attn)
    dataset = _dataset(tokenizer)
    pad = PadCollator(tokenizer.pad_token_id)
    alone = sum(_summed_loss(model, pad([dataset[i]])) for i in range(len(dataset)))
    packed = PackedDataset(dataset, max_length=512)
    assert any(len(block) > 1 for block in packed.blocks)
    batch = PackedCollator(tokenizer.pad_token_id, flatten=flatten)([packed[i] for i in range(len(packed))])
    assert _summed_loss(model, batch) == pytest.approx(alone, abs=1e-4)
    # The check has teeth: with a KV cache the model skips packed-sequence masking and the sum changes.
    with torch.no_grad():
        leaky = float(
            model(
                **{k: v for k, v in batch.items() if k != "real_tokens"}, use_cache=True, num_items_in_batch=1
            ).loss
        )
    if flatten:
        assert abs(leaky - alone) > 1e-2


def test_changing_one_packed_example_leaves_the_logits_of_its_neighbours_unchanged(tiny_model_dir, tokenizer):
    model = _model(tiny_model_dir, "sdpa")
    packed = PackedDataset(_dataset(tokenizer), max_length=512)
    index = next(i for i, block in enumerate(packed.blocks) if len(block) > 1)
    item = packed[index]
    first_len = int(packed.base.lengths[packed.blocks[index][0]])
    collate = PackedCollator(tokenizer.pad_token_id, flatten=True)
    changed = dict(item, input_ids=item["input_ids"].copy())
    changed["input_ids"][:first_len] = tokenizer.eos_token_id  # rewrite the whole first example
    with torch.no_grad():
        before = model(**{k: v for k, v in collate([item]).items() if k != "real_tokens"}).logits
        after = model(**{k: v for k, v in collate([changed]).items() if k != "real_tokens"}).logits
    assert not torch.allclose(before[0, :first_len], after[0, :first_len])
    assert torch.allclose(before[0, first_len:], after[0, first_len:], atol=1e-10)
