"""AFP's multilingual contrastive objective (Li et al., NAACL 2024, "Align after Pre-train").

For translation pairs (sent0 in English, sent1 in language L) the sentence representation is the hidden state
of the last non-pad token at one layer (AFP's scripts: the output of the first transformer block,
``hidden_states[1]``). Similarities are cosine / temperature (0.05) and the loss is InfoNCE with in-batch
negatives: pair i's sent1 is the positive for sent0 i, the other sent1s of the batch are negatives.

Direction: by default from sent0 to sent1 only, as SimCSE (whose sent0/sent1 format AFP's scripts use);
``symmetric=True`` averages both directions. Under data parallelism negatives are the local batch only.
The total loss is ``w_c * L_contrastive + w_lm * L_lm`` (AFP: 1.0 and 1.5).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def last_token_states(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at the last non-pad position of each row; right or left padding alike.

    ``hidden`` is (batch, seq, dim), ``attention_mask`` (batch, seq) with 1 on real tokens.
    """
    if hidden.shape[:2] != attention_mask.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and mask {tuple(attention_mask.shape)} do not match")
    mask = attention_mask.bool()
    if not mask.any(dim=1).all():
        raise ValueError("a row of the contrastive batch has no real token")
    seq = mask.shape[1]
    # Index of the last True in each row: the first True of the row reversed, counted from the end.
    last = seq - 1 - mask.flip(dims=[1]).int().argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def info_nce(
    anchors: torch.Tensor, candidates: torch.Tensor, temperature: float, symmetric: bool = False
) -> torch.Tensor:
    """InfoNCE over in-batch negatives: row i of ``anchors`` matches row i of ``candidates``.

    logits[i, j] = cos(anchors_i, candidates_j) / temperature; the loss is the cross-entropy of each row
    against its diagonal (averaged over rows), and with ``symmetric`` also of each column, the two averaged.
    """
    if anchors.shape != candidates.shape or anchors.dim() != 2:
        raise ValueError(
            f"anchors {tuple(anchors.shape)} and candidates {tuple(candidates.shape)} must be (n, d)"
        )
    logits = F.normalize(anchors.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T / temperature
    targets = torch.arange(logits.shape[0], device=logits.device)
    loss = F.cross_entropy(logits, targets)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, targets))
    return loss


def pair_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count real tokens only, so a left-padded row sees the same positions as unpadded."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def contrastive_loss(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layer: int,
    temperature: float,
    symmetric: bool = False,
) -> torch.Tensor:
    """AFP's contrastive loss for a batch of 2n rows: n sent0 rows, then their n sent1 rows.

    Runs the whole model (so FSDP/DeepSpeed wrappers gather their weights as usual) with hidden states,
    computing the vocabulary projection for one position only.
    """
    rows = input_ids.shape[0]
    if rows % 2 or rows < 4:
        raise ValueError(
            f"the contrastive batch needs 2n rows with n >= 2 (one negative at least), got {rows}"
        )
    outputs = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=pair_position_ids(attention_mask),
        output_hidden_states=True,
        use_cache=False,
        logits_to_keep=1,
    )
    hidden_states = outputs.hidden_states
    if not 0 <= layer < len(hidden_states):
        raise ValueError(
            f"afp.layer {layer} is out of range: the model has hidden states 0..{len(hidden_states) - 1}"
        )
    states = last_token_states(hidden_states[layer], attention_mask)
    half = rows // 2
    return info_nce(states[:half], states[half:], temperature, symmetric)


def afp_loss(
    lm_loss: torch.Tensor, contrastive: torch.Tensor, weight_lm: float = 1.5, weight_contrastive: float = 1.0
) -> torch.Tensor:
    """AFP's total loss: ``weight_contrastive * contrastive + weight_lm * lm_loss``."""
    return weight_contrastive * contrastive + weight_lm * lm_loss
