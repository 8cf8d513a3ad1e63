"""AFP's contrastive objective."""

from __future__ import annotations

import math

import pytest
import torch

from xinst_assets.training.objectives import afp_loss, contrastive_loss, info_nce, last_token_states
from xinst_assets_tests.training.conftest import PARALLEL_ROWS

ANCHORS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
CANDIDATES = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # lengths differ: only directions count (cosine)


def test_info_nce_matches_a_hand_computed_value():
    # cos: [[1, 1/sqrt2], [0, 1/sqrt2]]; / 0.5 -> logits [[2, sqrt2], [0, sqrt2]]; targets on the diagonal.
    r2 = math.sqrt(2)
    row0 = math.log(1 + math.exp(r2 - 2))  # -log(e^2 / (e^2 + e^sqrt2))
    row1 = math.log(1 + math.exp(-r2))  # -log(e^sqrt2 / (e^0 + e^sqrt2))
    assert float(info_nce(ANCHORS, CANDIDATES, temperature=0.5)) == pytest.approx((row0 + row1) / 2, abs=1e-6)


def test_symmetric_info_nce_averages_both_directions_by_hand():
    r2 = math.sqrt(2)
    rows = (math.log(1 + math.exp(r2 - 2)) + math.log(1 + math.exp(-r2))) / 2
    # columns: [2, 0] with target 0, and [sqrt2, sqrt2] with target 1
    cols = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    value = float(info_nce(ANCHORS, CANDIDATES, temperature=0.5, symmetric=True))
    assert value == pytest.approx((rows + cols) / 2, abs=1e-6)


def test_afp_total_loss_weights_contrastive_1_and_lm_1_5_by_default():
    assert float(afp_loss(torch.tensor(2.0), torch.tensor(3.0))) == pytest.approx(3.0 + 1.5 * 2.0)
    assert float(afp_loss(torch.tensor(2.0), torch.tensor(3.0), weight_lm=1.0, weight_contrastive=0.5)) == 3.5


def test_last_token_states_take_the_last_real_token_with_right_or_left_padding():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_token_states(hidden, right).flatten().tolist() == [1.0, 7.0]
    assert last_token_states(hidden, left).flatten().tolist() == [3.0, 7.0]
    with pytest.raises(ValueError, match="no real token"):
        last_token_states(hidden, torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]]))


def _pair_batch(tokenizer, side: str):
    rows = [tokenizer(r["en"])["input_ids"] for r in PARALLEL_ROWS[:3]]
    rows += [tokenizer(r["text"])["input_ids"] for r in PARALLEL_ROWS[:3]]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, row in enumerate(rows):
        span = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[k, span] = torch.tensor(row)
        mask[k, span] = 1
    return ids, mask


def test_the_model_contrastive_loss_is_the_same_with_left_or_right_padding(tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64).eval()
    with torch.no_grad():
        right = contrastive_loss(model, *_pair_batch(tokenizer, "right"), layer=1, temperature=0.05)
        left = contrastive_loss(model, *_pair_batch(tokenizer, "left"), layer=1, temperature=0.05)
        # By hand: the last real token's state at hidden_states[1] of each sentence, alone and unpadded.
        states = []
        for text in [r["en"] for r in PARALLEL_ROWS[:3]] + [r["text"] for r in PARALLEL_ROWS[:3]]:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            states.append(model(input_ids=ids, output_hidden_states=True).hidden_states[1][0, -1])
        states = torch.stack(states)
    expected = info_nce(states[:3], states[3:], temperature=0.05)
    assert float(right) == pytest.approx(float(expected), abs=1e-8)
    assert float(left) == pytest.approx(float(expected), abs=1e-8)


def test_a_layer_outside_the_model_is_a_clear_error(tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with pytest.raises(ValueError, match=r"afp.layer 3 is out of range: the model has hidden states 0..2"):
        contrastive_loss(model, *_pair_batch(tokenizer, "right"), layer=3, temperature=0.05)
