"""Multiple-choice benchmarks (XNLI / XCOPA / XStoryCloze formats): files, rendering, lm-eval wiring, scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xinst_assets.core import benchmarks
from xinst_assets.core.benchmarks import (
    BENCHMARKS,
    BenchmarkDataError,
    BenchmarkWords,
    TaskFile,
    find_task_files,
    lm_eval_model,
    lm_eval_task,
    predictions_constant_by_construction,
    read_docs,
    render,
    run_lm_eval,
    target,
)
from xinst_assets.settings import SAMPLE_DIR

SAMPLE = SAMPLE_DIR / "benchmarks"
LANGUAGES = ["bn", "fi", "hi", "id", "sw", "ta", "th", "tr", "ur", "vi"]


def _write(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_the_sample_files_cover_every_format_and_each_can_tell_its_examples_apart():
    tasks = find_task_files(SAMPLE, LANGUAGES)
    assert {t.benchmark for t in tasks} == set(BENCHMARKS)
    for task in tasks:
        docs = read_docs(task)
        assert len(docs) >= 4, task.path
        assert predictions_constant_by_construction(task.benchmark, task.lang, docs) == [], task.path
        # Every right answer is not the same choice: a model that always picks one choice cannot score 100%.
        assert len({target(task.benchmark, d) for d in docs}) > 1, task.path


def test_an_xnli_choice_carries_the_premise_the_hypothesis_and_its_own_label_word():
    doc = {"premise": "Duka hufungwa kila Jumapili.", "hypothesis": "Duka liko wazi kila siku.", "label": 2}
    context, choices = render("xnli", "sw", doc)
    assert context == "" and len(choices) == 3 == len(set(choices))
    assert choices[2] == "Duka hufungwa kila Jumapili, sivyo? Hapana, Duka liko wazi kila siku."
    assert all(c.startswith("Duka hufungwa kila Jumapili, sivyo? ") and c.endswith(doc["hypothesis"]) for c in choices)
    other = render("xnli", "sw", {**doc, "hypothesis": "Duka ni kubwa."})[1]
    assert not set(other) & set(choices)  # another hypothesis, other texts: the scores follow the example


def test_a_template_without_a_slot_for_the_choice_is_caught_before_any_model_runs(monkeypatch):
    # AFP's published XNLI template has no slot for the label: every class renders the same text.
    monkeypatch.setitem(benchmarks.BENCHMARK_WORDS, "xx", BenchmarkWords("?", "", "", "", "", ""))
    docs = [{"premise": "A.", "hypothesis": "B.", "label": 0}, {"premise": "C.", "hypothesis": "D.", "label": 2}]
    problems = predictions_constant_by_construction("xnli", "xx", docs)
    assert problems == ["example 0: two choices render to the same text", "example 1: two choices render to the same text"]


def test_xcopa_joins_the_premise_to_its_cause_or_effect_and_xstorycloze_to_its_endings():
    doc = {"premise": "Simu yangu ilizima ghafla.", "choice1": "Betri iliisha.", "choice2": "Nilipokea ujumbe.",
           "question": "cause", "label": 0}
    assert render("xcopa", "sw", doc) == ("Simu yangu ilizima ghafla kwa sababu", ["betri iliisha.", "nilipokea ujumbe."])
    assert render("xcopa", "sw", {**doc, "question": "effect"})[0].endswith("kwa hiyo")
    story = {f"input_sentence_{i}": f"S{i}." for i in range(1, 5)}
    story.update(sentence_quiz1="E1.", sentence_quiz2="E2.", answer_right_ending=2)
    assert render("xstorycloze", "id", story) == ("S1. S2. S3. S4.", ["E1.", "E2."])
    assert target("xstorycloze", story) == 1 and target("xcopa", doc) == 0


def test_a_bad_file_fails_with_its_path_line_and_field(tmp_path):
    bad = TaskFile("xnli", "sw", tmp_path / "xnli" / "sw.jsonl")
    _write(bad.path, [{"premise": "A.", "hypothesis": "B.", "label": 0}, {"premise": "A.", "label": 1}])
    with pytest.raises(BenchmarkDataError, match=r"sw.jsonl:2: missing hypothesis for xnli"):
        read_docs(bad)
    _write(bad.path, [{"premise": "A.", "hypothesis": "B.", "label": 3}])
    with pytest.raises(BenchmarkDataError, match=r"sw.jsonl:1: label \(0..2\) out of range: 3"):
        read_docs(bad)
    _write(bad.path, ["{not json"])
    with pytest.raises(BenchmarkDataError, match="sw.jsonl:1: not JSON"):
        read_docs(bad)
    _write(bad.path, [""])
    with pytest.raises(BenchmarkDataError, match="no examples"):
        read_docs(bad)
    with pytest.raises(BenchmarkDataError, match="no XNLI/XCOPA prompt words for language 'qu'"):
        render("xcopa", "qu", {"premise": "A.", "choice1": "b", "choice2": "c", "question": "cause", "label": 0})
    with pytest.raises(ValueError, match="unknown benchmarks"):
        find_task_files(tmp_path, ["sw"], ["mmlu"])


def test_lm_eval_builds_its_requests_from_these_renderings_and_the_files_examples(tmp_path):
    from lm_eval.tasks import TaskManager, get_task_dict

    for task in find_task_files(SAMPLE, LANGUAGES):
        built = get_task_dict([lm_eval_task(task, tmp_path)], TaskManager(include_defaults=False))[task.name]
        docs = list(built.test_docs())
        assert docs == read_docs(task)
        built.build_all_requests(limit=None, rank=0, world_size=1)
        by_doc: dict[int, list] = {}
        for instance in built.instances:
            by_doc.setdefault(instance.doc_id, []).append(instance.arguments)
        for doc_id, arguments in by_doc.items():
            context, choices = render(task.benchmark, task.lang, docs[doc_id])
            assert arguments == [(context, " " + c) for c in choices]
            assert len(set(arguments)) == len(arguments)  # each choice is scored on its own text


def test_each_backend_maps_to_lm_evals_model_or_says_why_not():
    assert lm_eval_model("transformers", "/m", dtype="float32", device="cpu", batch_size=4) == (
        "hf", {"pretrained": "/m", "trust_remote_code": False, "batch_size": 4, "dtype": "float32", "device": "cpu"})
    kind, args = lm_eval_model("vllm", "/m", tensor_parallel_size=2, max_model_len=4096)
    assert kind == "vllm" and args["tensor_parallel_size"] == 2 and args["max_model_len"] == 4096
    with pytest.raises(ValueError, match="chat endpoint gives no log-probabilities"):
        lm_eval_model("openai", "served")


@pytest.mark.slow
def test_lm_eval_scores_a_real_tiny_model_on_the_sample_files(tmp_path):
    from xinst_assets.core.tiny_model import build_tiny_model

    texts = [line for path in sorted(SAMPLE.glob("*/*.jsonl")) for line in path.read_text().splitlines()]
    model = build_tiny_model(tmp_path / "tiny", texts * 3, hidden_size=32, num_layers=1, num_heads=2, vocab_size=600)
    tasks = find_task_files(SAMPLE, ["sw", "id"])
    kind, args = lm_eval_model("transformers", str(model), dtype="float32", device="cpu", batch_size=8)
    scores = run_lm_eval(kind, args, tasks, tmp_path / "cache")
    assert [(s.benchmark, s.lang) for s in scores] == [(t.benchmark, t.lang) for t in tasks]
    for score, task in zip(scores, tasks):
        docs = read_docs(task)
        assert score.examples == len(docs) == sum(score.predicted.values())
        assert 0.0 <= score.accuracy <= 1.0
        assert score.accuracy * len(docs) == pytest.approx(round(score.accuracy * len(docs)))
