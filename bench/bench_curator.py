"""How well the curator separates held-out seed pairs, beside the untrained base model and a feature baseline.

    .venv/bin/python bench/bench_curator.py [--steps 120] [--threads 2] [--out bench/out/curator]

Builds the judgements the ``curator`` asset trains on from the embedded sample's seed pairs (matched = 3,
partial = 2, shuffled over the seed set = 1 for half the training pairs and every held-out pair; a fifth of each
language's pairs held out), trains the demo's
curator with exactly the asset's settings (``curator_training_settings``: the tiny demo base, 120 steps at
3e-3, 512-token sequences) through the real training entry point, and grades the held-out judgements by
constrained choice in the chat layout ``scored_pairs`` uses. Printed side by side, on the same held-out
judgements:

* **untrained base**: the tiny base model before any tuning (what grades when no curator exists);
* **trained curator**: the checkpoint above;
* **feature baseline**: a logistic regression (scikit-learn, balanced classes) on hand-made pair features
  (instruction words crossed with the response's shape: numbered list, early line break, line count, final
  punctuation, salutation comma; length bucket), trained on the same training judgements. It is a yardstick for
  what the seed pairs teach without any knowledge of the languages, not a curator xinst uses.

For each: the share of each kind accepted at label 3 and the mean expected score (the logistic regression's
probability-weighted label). Training time is wall time on this machine (shared, see RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from xinst_assets.assets.curator import curator_training_settings
from xinst_assets.core.judgements import (
    KINDS, SHUFFLED, Judgement, JudgementRules, SeedPair, judgement_sets, separation,
)
from xinst_assets.core.prompts import JUDGE_CHOICES, judge_prompt
from xinst_assets.inference.base import ModelSpec
from xinst_assets.inference.scoring import PairScore
from xinst_assets.inference.transformers_backend import TransformersBackend
from xinst_assets.languages import load_registry
from xinst_assets.resources.models import ModelSettings
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets.training import TrainConfig, train


def sample_pairs() -> list[SeedPair]:
    pairs = []
    for lang in load_registry():
        path = SAMPLE_DIR / "seed_pairs" / f"{lang.code}.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            pairs.append(SeedPair(row["instruction"], row["response"], lang.name))
    return pairs


def grade_with_model(model: str, examples: list[Judgement], threads: int) -> tuple[list[int], list[float]]:
    backend = TransformersBackend(ModelSpec(model=model), batch_size=8, num_threads=threads, chat=True)
    try:
        dists = backend.choice_logprobs([judge_prompt(e.instruction, e.response, e.lang_name) for e in examples],
                                        list(JUDGE_CHOICES))
    finally:
        backend.close()
    scores = [PairScore.from_distribution(d) for d in dists]
    return [s.label for s in scores], [s.expected for s in scores]


def _shape(response: str) -> list[str]:
    out = [f"lines{min(response.count(chr(10)), 6)}"]
    if re.search(r"(^|\n)\s*\S{0,6}?\d", response):
        out.append("numbered")
    if "\n" in response[:150]:
        out.append("early_break")
    if response.rstrip()[-1:] in ".!?।۔":
        out.append("final_punct")
    if "," in response.split("\n")[0][:40]:
        out.append("salutation")
    return out


def _features(example: Judgement) -> list[str]:
    words = set(re.findall(r"[a-z]+", example.instruction.lower()))
    shape = _shape(example.response)
    return [f"{w}|{s}" for w in words for s in shape] + shape + [f"len{min(len(example.response) // 100, 6)}"]


def feature_baseline(train: list[Judgement], heldout: list[Judgement]) -> tuple[list[int], list[float]]:
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.linear_model import LogisticRegression

    hasher = FeatureHasher(2**16, input_type="string")
    model = LogisticRegression(max_iter=2000, class_weight="balanced")
    model.fit(hasher.transform([_features(e) for e in train]), [e.label for e in train])
    probs = model.predict_proba(hasher.transform([_features(e) for e in heldout]))
    labels = [int(model.classes_[row.argmax()]) for row in probs]
    expected = [float(sum(c * p for c, p in zip(model.classes_, row))) for row in probs]
    return labels, expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="curator training steps (default: the demo's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/out/curator"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    train_set, heldout = judgement_sets(sample_pairs(), JudgementRules())
    args.out.mkdir(parents=True, exist_ok=True)
    data_file = args.out / "judgements.jsonl"
    data_file.write_text("".join(json.dumps(j.row(), ensure_ascii=False) + "\n" for j in train_set),
                         encoding="utf-8")
    models = ModelSettings(curator_max_steps=args.steps)
    base = models.resolve_base_model(args.out / "models")
    settings = curator_training_settings(models, base, data_file)
    run_dir = args.out / f"curator-{settings['max_steps']}"
    started = time.monotonic()
    result = train(TrainConfig.from_dict({**settings, "output_dir": str(run_dir)}))
    seconds = time.monotonic() - started
    print(f"judgements: {len(train_set)} training, {len(heldout)} held out")
    print(f"curator training: {result.global_step} steps, {seconds:.0f} s wall, final loss {result.final_loss:.3f}")
    contenders = {
        "untrained base": grade_with_model(base, heldout, args.threads),
        "trained curator": grade_with_model(str(run_dir), heldout, args.threads),
        "feature baseline": feature_baseline(train_set, heldout),
    }
    print(f"\n{'contender':<18} {'kind':<24} {'accepted@3':>10} {'mean score':>10}")
    for name, (labels, expected) in contenders.items():
        result_sep = separation(heldout, labels, expected, accept_label=3)
        for kind in (*KINDS, SHUFFLED):
            if kind in result_sep.counts:
                print(f"{name:<18} {kind + f' ({result_sep.counts[kind]})':<24} {result_sep.accepted[kind]:>10.0%} "
                      f"{result_sep.mean_expected[kind]:>10.2f}")
        print(f"{name:<18} margin (matched - shuffled accepted): {result_sep.margin:+.2f}")


if __name__ == "__main__":
    main()
