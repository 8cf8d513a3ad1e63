"""Accuracy of stage 2 on the labelled evaluation set: per-language precision and recall end to end, mixed
posts kept, short-line language ID, and the quality rules' agreement with the good/bad labels.

    .venv/bin/python bench/bench_filter_accuracy.py                          # the set under xinst_assets_tests/data/filter_eval
    .venv/bin/python bench/bench_filter_accuracy.py --errors                 # and every miss and wrong keep
    .venv/bin/python bench/bench_filter_accuracy.py --baseline-tree ../main-before   # and the code of another checkout
    .venv/bin/python bench/bench_filter_accuracy.py --ablations              # and the current code with parts turned off

End to end means what the assets do (``xinst_assets.core.filter_eval``): every partition screens every
document of ``lid/`` and ``distractors/`` (foreign ones included) with length, LID, quality and exact + near
dedup. The near-duplicate groups are measured by ``bench/bench_dedup_accuracy.py``.

``--baseline-tree`` runs the same evaluation module (this checkout's) against the filter code and registry of
another checkout (for example a ``git worktree`` of the commit before a change), in a subprocess whose
``xinst_assets`` is that checkout's: "before" and "after" in one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SET = ROOT / "xinst_assets_tests" / "data" / "filter_eval"
EVAL_MODULE = ROOT / "xinst_assets" / "core" / "filter_eval.py"


def _load_eval_module():
    """This checkout's evaluation module, whatever ``xinst_assets`` is on the path (the baseline's code)."""
    spec = importlib.util.spec_from_file_location("xinst_filter_eval", EVAL_MODULE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["xinst_filter_eval"] = module
    spec.loader.exec_module(module)
    return module


def _run(eval_set_dir: Path, variant: str) -> dict:
    """Evaluate with the ``xinst_assets`` importable here; ``variant`` turns parts of the current code off."""
    fe = _load_eval_module()
    from xinst_assets.core.filtering import FilterSettings
    from xinst_assets.core.lid import LanguageIdentifier
    from xinst_assets.languages import load_registry

    registry = load_registry()
    identifier = LanguageIdentifier(registry=registry)
    settings_for = fe._default_settings
    if variant != "current":
        from dataclasses import replace

        from xinst_assets.core.lid import LidPolicy

        calibrated = variant != "uncalibrated"
        policy = {"fasttext_only": LidPolicy.fasttext_only(), "no_mixed": replace(LidPolicy(), mixed=False)}.get(
            variant, LidPolicy())

        def settings_for(lang):
            return FilterSettings.for_language(lang, calibrated=calibrated, lid_policy=policy)

    eval_set = fe.load_eval_set(eval_set_dir)
    start = time.perf_counter()
    report = fe.evaluate(eval_set, registry, identifier, settings_for, label=variant)
    seconds = time.perf_counter() - start
    return {"variant": variant, "markdown": report.markdown(), "errors": report.errors(),
            "totals": report.totals(), "missed_targets": fe.targets_missed(report),
            "leaks": {k: dict(v) for k, v in sorted(report.leaks.items())}, "seconds": round(seconds, 1),
            "documents": len(eval_set.items), "quality_documents": len(eval_set.quality)}


def _child(args: argparse.Namespace) -> None:
    print(json.dumps(_run(Path(args.set), args.variant)))


def _in_tree(tree: Path, eval_set_dir: Path, variant: str) -> dict:
    """Run the evaluation in a subprocess whose ``xinst_assets`` is ``tree``'s."""
    code = (f"import sys; sys.path.insert(0, {str(tree)!r}); sys.path.insert(1, {str(ROOT / 'bench')!r}); "
            f"import bench_filter_accuracy as b; sys.argv = ['x', '--child', '--set', {str(eval_set_dir)!r}, "
            f"'--variant', {variant!r}]; b.main()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tree)
    if out.returncode != 0:
        raise SystemExit(f"evaluation in {tree} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _print(result: dict, title: str, errors: bool) -> None:
    print(f"\n### {title}\n")
    print(f"{result['documents']} documents screened by every partition, {result['quality_documents']} "
          f"quality-labelled documents; {result['seconds']} s\n")
    print(result["markdown"])
    print("\nKept by a partition not their own (language -> partitions): "
          + (", ".join(f"{k}: {v}" for k, v in result["leaks"].items()) or "none"))
    missed = result["missed_targets"]
    print("Targets (precision >= 0.98 and clean recall >= 0.95 per language, mixed kept >= 0.8, good kept >= 0.9, "
          "bad dropped >= 0.95): " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    if errors and result["errors"]:
        print("\n```\n" + result["errors"] + "\n```")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default=str(DEFAULT_SET), help="the evaluation set's folder")
    parser.add_argument("--baseline-tree", help="a checkout whose filter code and registry are the baseline")
    parser.add_argument("--ablations", action="store_true",
                        help="also the current code uncalibrated, fastText-only, and without mixed documents")
    parser.add_argument("--errors", action="store_true", help="print every miss and wrong keep")
    parser.add_argument("--json", help="write every result to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="current", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)
    eval_set = Path(args.set).resolve()
    results = []
    if args.baseline_tree:
        tree = Path(args.baseline_tree).resolve()
        commit = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h"], capture_output=True,
                                text=True).stdout.strip()
        results.append((f"Before: the code of {tree.name} ({commit or 'not a git checkout'})",
                        _in_tree(tree, eval_set, "current")))
    commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h"], capture_output=True,
                            text=True).stdout.strip()
    results.append((f"After: this checkout ({commit})", _in_tree(ROOT, eval_set, "current")))
    if args.ablations:
        for variant, title in (("uncalibrated", "This checkout without the calibration"),
                               ("fasttext_only", "This checkout with fastText alone (no second opinion, no mixed)"),
                               ("no_mixed", "This checkout without the mixed-document rule")):
            results.append((title, _in_tree(ROOT, eval_set, variant)))
    for title, result in results:
        _print(result, title, args.errors)
    if args.json:
        Path(args.json).write_text(json.dumps([r for _, r in results], indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
