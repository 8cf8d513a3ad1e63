"""Stage 7 logic: language fidelity, X-Instruction's pairwise judging in both orders, and held-out loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from xinst_assets.core.lid import LanguageIdentifier
from xinst_assets.core.prompts import parse_pairwise_scores, response_prompt


@dataclass(frozen=True)
class PairwiseOutcome:
    """One question judged in both orders: the tuned answer's and the baseline's mean scores, and the verdict."""

    tuned_score: float | None
    base_score: float | None
    verdict: str  # win | tie | loss | unjudged


def language_fidelity(answers: Sequence[str], lang_code: str, identifier: LanguageIdentifier) -> float:
    """Share of answers whose fastText language is ``lang_code`` (an empty answer counts as wrong)."""
    if not answers:
        return 0.0
    predictions = identifier.predict([a if a.strip() else "." for a in answers])
    return sum(p.lang == lang_code and bool(a.strip()) for p, a in zip(predictions, answers)) / len(answers)


def pairwise_verdict(tuned_first: str, base_first: str) -> PairwiseOutcome:
    """Combine the judge's outputs for (tuned, base) and (base, tuned) into one verdict.

    Each order gives two 0-10 scores; a model's score is its mean over the orders it was parsed in, which cancels
    the judge's position bias. Win / loss when the means differ, tie when equal, unjudged when nothing parsed.
    """
    tuned, base = [], []
    first = parse_pairwise_scores(tuned_first)
    if first:
        tuned.append(first[0])
        base.append(first[1])
    second = parse_pairwise_scores(base_first)
    if second:
        base.append(second[0])
        tuned.append(second[1])
    if not tuned:
        return PairwiseOutcome(None, None, "unjudged")
    t, b = sum(tuned) / len(tuned), sum(base) / len(base)
    verdict = "win" if t > b else "loss" if t < b else "tie"
    return PairwiseOutcome(t, b, verdict)


def heldout_loss(model_path: str, rows: Sequence[dict[str, Any]], max_length: int = 512) -> float | None:
    """Mean token NLL of each row's response given its response prompt (the loss the tuned model trains on)."""
    if not rows:
        return None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            prompt_ids = tokenizer(response_prompt(row["instruction"], row["lang_name"]))["input_ids"]
            target_ids = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
            if tokenizer.eos_token_id is not None:
                target_ids = target_ids + [tokenizer.eos_token_id]
            ids = (prompt_ids + target_ids)[:max_length]
            labels = ([-100] * len(prompt_ids) + target_ids)[:max_length]
            if all(label == -100 for label in labels[1:]):
                continue
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            n = sum(label != -100 for label in labels[1:])
            total += float(out.loss) * n
            count += n
    return total / count if count else None
