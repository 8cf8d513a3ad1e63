"""Multiple-choice benchmarks in the XNLI, XCOPA and XStoryCloze formats, run through ``lm-eval`` from local files.

X-Instruction reports XNLI / XCOPA / XStoryCloze accuracy beside the pairwise judge (METHOD.md stage 7). The task
data are read from ``<root>/<benchmark>/<lang>.jsonl`` with the field names of the public releases, so the real
test splits can be exported as they are (e.g. ``datasets.load_dataset("facebook/xnli", "sw", split="test")
.to_json("benchmarks/xnli/sw.jsonl")``); the project ships tiny original sample files under
``xinst_assets/data/sample/benchmarks/``.

Scoring is lm-eval's ``multiple_choice``: the log-likelihood of each choice's continuation after the context,
the prediction is the most likely choice. The rendering is ours (:func:`render`), in the usual formats:

* **XNLI** (3-way entailment; XGLM-style): no context; choice *k* is ``premise, <right?> <word_k>, hypothesis``
  with the words for entailment / neutral / contradiction ("Yes" / "Also" / "No" in the language). Both the
  hypothesis and the label word are in every choice: a template without a slot for them (AFP's published XNLI
  template) scores the same text for every class, and its prediction is the same class for every example.
* **XCOPA** (cause/effect): context ``premise <because|therefore>``, choices the two alternatives.
* **XStoryCloze**: context the four sentences, choices the two endings.

:func:`predictions_constant_by_construction` checks that property on the data before any model runs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

BENCHMARKS: tuple[str, ...] = ("xnli", "xcopa", "xstorycloze")
# The fields each format reads (the names of the public releases: facebook/xnli, cambridgeltl/xcopa,
# juletxara/xstory_cloze), and the labels it allows.
FIELDS: dict[str, tuple[str, ...]] = {
    "xnli": ("premise", "hypothesis", "label"),
    "xcopa": ("premise", "choice1", "choice2", "question", "label"),
    "xstorycloze": ("input_sentence_1", "input_sentence_2", "input_sentence_3", "input_sentence_4",
                    "sentence_quiz1", "sentence_quiz2", "answer_right_ending"),
}
XNLI_LABELS = ("entailment", "neutral", "contradiction")  # XNLI's label ids 0, 1, 2


@dataclass(frozen=True)
class BenchmarkWords:
    """The few words a language's XNLI and XCOPA prompts need (xinst's own choice of everyday words).

    ``question`` closes the premise as a tag question ("right?"); ``yes``/``also``/``no`` stand for entailment,
    neutral and contradiction; ``because``/``therefore`` join an XCOPA premise to its cause or effect.
    """

    question: str
    yes: str
    also: str
    no: str
    because: str
    therefore: str


BENCHMARK_WORDS: dict[str, BenchmarkWords] = {
    "en": BenchmarkWords("right?", "Yes", "Also", "No", "because", "therefore"),
    "bn": BenchmarkWords("তাই না?", "হ্যাঁ", "এছাড়াও", "না", "কারণ", "তাই"),
    "fi": BenchmarkWords("eikö?", "Kyllä", "Lisäksi", "Ei", "koska", "joten"),
    "hi": BenchmarkWords("है ना?", "हाँ", "साथ ही", "नहीं", "क्योंकि", "इसलिए"),
    "id": BenchmarkWords("bukan?", "Ya", "Juga", "Tidak", "karena", "maka"),
    "sw": BenchmarkWords("sivyo?", "Ndiyo", "Pia", "Hapana", "kwa sababu", "kwa hiyo"),
    "ta": BenchmarkWords("இல்லையா?", "ஆம்", "மேலும்", "இல்லை", "ஏனெனில்", "எனவே"),
    "th": BenchmarkWords("ใช่ไหม", "ใช่", "นอกจากนี้", "ไม่", "เพราะว่า", "ดังนั้น"),
    "tr": BenchmarkWords("değil mi?", "Evet", "Ayrıca", "Hayır", "çünkü", "bu yüzden"),
    "ur": BenchmarkWords("ہے نا؟", "ہاں", "نیز", "نہیں", "کیونکہ", "اس لیے"),
    "vi": BenchmarkWords("đúng không?", "Đúng", "Ngoài ra", "Không", "bởi vì", "vì vậy"),
}
_SENTENCE_END = " .!?。।۔"


class BenchmarkDataError(ValueError):
    """A benchmark file that cannot be scored (the message names the file, line and field)."""


@dataclass(frozen=True)
class TaskFile:
    """One language's file of one benchmark."""

    benchmark: str
    lang: str
    path: Path

    @property
    def name(self) -> str:
        """The lm-eval task name."""
        return f"xinst_{self.benchmark}_{self.lang}"


def find_task_files(root: Path, languages: Sequence[str], benchmarks: Sequence[str] = BENCHMARKS) -> list[TaskFile]:
    """The ``<root>/<benchmark>/<lang>.jsonl`` files that exist for ``languages``, in a stable order."""
    unknown = sorted(set(benchmarks) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"unknown benchmarks {unknown}: use {', '.join(BENCHMARKS)}")
    return [TaskFile(b, lang, root / b / f"{lang}.jsonl") for b in benchmarks for lang in sorted(languages)
            if (root / b / f"{lang}.jsonl").is_file()]


def read_docs(task: TaskFile, limit: int | None = None) -> list[dict[str, Any]]:
    """The file's examples, checked: every field of the format present, labels in range, text non-empty."""
    docs: list[dict[str, Any]] = []
    for number, line in enumerate(task.path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkDataError(f"{task.path}:{number}: not JSON ({exc.msg})") from exc
        missing = [f for f in FIELDS[task.benchmark] if f not in doc or doc[f] in (None, "")]
        if missing:
            raise BenchmarkDataError(f"{task.path}:{number}: missing {', '.join(missing)} for {task.benchmark}")
        try:
            target(task.benchmark, doc)
        except (ValueError, TypeError) as exc:
            raise BenchmarkDataError(f"{task.path}:{number}: {exc}") from exc
        docs.append(doc)
        if limit is not None and len(docs) >= limit:
            break
    if not docs:
        raise BenchmarkDataError(f"{task.path}: no examples")
    return docs


def target(benchmark: str, doc: Mapping[str, Any]) -> int:
    """The index of the right choice."""
    if benchmark == "xstorycloze":
        value, allowed = int(doc["answer_right_ending"]) - 1, 2
        name = "answer_right_ending (1 or 2)"
    else:
        value, allowed = int(doc["label"]), 3 if benchmark == "xnli" else 2
        name = f"label (0..{allowed - 1})"
    if not 0 <= value < allowed:
        raise ValueError(f"{name} out of range: {doc.get('label', doc.get('answer_right_ending'))!r}")
    return value


def words_for(lang: str) -> BenchmarkWords:
    try:
        return BENCHMARK_WORDS[lang]
    except KeyError:
        raise BenchmarkDataError(
            f"no XNLI/XCOPA prompt words for language {lang!r}: add them to BENCHMARK_WORDS "
            "(xinst_assets/core/benchmarks.py)"
        ) from None


def _clause(text: str) -> str:
    """A sentence without its final punctuation (it continues with a tag question or a connective)."""
    return text.strip().rstrip(_SENTENCE_END)


def _lower_first(text: str) -> str:
    text = text.strip()
    return text[:1].lower() + text[1:]


def render(benchmark: str, lang: str, doc: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The context and the choices' continuations of one example (lm-eval joins them with a space)."""
    if benchmark == "xnli":
        w = words_for(lang)
        head = f"{_clause(doc['premise'])}, {w.question}"
        return "", [f"{head} {word}, {doc['hypothesis'].strip()}" for word in (w.yes, w.also, w.no)]
    if benchmark == "xcopa":
        w = words_for(lang)
        question = str(doc["question"]).strip().lower()
        if question not in ("cause", "effect"):
            raise BenchmarkDataError(f"XCOPA question must be 'cause' or 'effect', got {doc['question']!r}")
        connective = w.because if question == "cause" else w.therefore
        return f"{_clause(doc['premise'])} {connective}", [_lower_first(doc["choice1"]), _lower_first(doc["choice2"])]
    if benchmark == "xstorycloze":
        story = " ".join(str(doc[f"input_sentence_{i}"]).strip() for i in range(1, 5))
        return story, [str(doc["sentence_quiz1"]).strip(), str(doc["sentence_quiz2"]).strip()]
    raise ValueError(f"unknown benchmark {benchmark!r}")


def predictions_constant_by_construction(benchmark: str, lang: str, docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why a model's predictions could not depend on the example (empty: they can).

    Two choices of one example that render to the same text score the same for any model, so the argmax is
    decided by position alone; a rendering that leaves out what differs between examples (AFP's XNLI template
    drops the hypothesis) gives every example of the same premise the same scores.
    """
    problems = []
    for i, doc in enumerate(docs):
        context, choices = render(benchmark, lang, doc)
        if len(set(choices)) != len(choices):
            problems.append(f"example {i}: two choices render to the same text")
        if benchmark == "xnli" and not all(doc["hypothesis"].strip() in c for c in choices):
            problems.append(f"example {i}: the hypothesis is not in every choice")
    return problems


def lm_eval_task(task: TaskFile, cache_dir: Path, limit: int | None = None) -> dict[str, Any]:
    """An lm-eval task config (``multiple_choice``, accuracy) that reads ``task.path`` and renders with
    :func:`render`. ``limit`` keeps the first examples (the file is checked by :func:`read_docs` first)."""
    read_docs(task, limit)  # a bad file fails here with its line number, not deep inside lm-eval
    render_one: Callable[[Mapping[str, Any]], tuple[str, list[str]]] = partial(render, task.benchmark, task.lang)
    return {
        "task": task.name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(task.path)}, "cache_dir": str(cache_dir)},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": lambda doc: render_one(doc)[0],
        "doc_to_choice": lambda doc: render_one(doc)[1],
        "doc_to_target": partial(target, task.benchmark),
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0, "source": str(task.path)},
    }


@dataclass(frozen=True)
class BenchmarkScore:
    """One model's accuracy on one language's file of one benchmark, and what it predicted."""

    benchmark: str
    lang: str
    examples: int
    accuracy: float
    predicted: Mapping[int, int]  # choice index -> examples predicted so

    @property
    def constant(self) -> bool:
        """Every example predicted as the same choice (a sign of a broken template or a degenerate model)."""
        return self.examples > 1 and len(self.predicted) == 1


def lm_eval_model(backend: str, model: str, *, dtype: str = "auto", device: str = "auto", batch_size: int = 8,
                  trust_remote_code: bool = False, tensor_parallel_size: int = 1,
                  gpu_memory_utilization: float = 0.9, max_model_len: int | None = None) -> tuple[str, dict[str, Any]]:
    """lm-eval's model type and arguments for a model served by xinst's ``backend``.

    transformers -> lm-eval's ``hf``; vllm -> ``vllm``. Models behind an HTTP server are not scored: multiple
    choice needs the log-probabilities of the continuation's tokens, which chat endpoints do not give.
    """
    if backend == "transformers":
        args: dict[str, Any] = {"pretrained": model, "trust_remote_code": trust_remote_code,
                                "batch_size": batch_size}
        if dtype != "auto":
            args["dtype"] = dtype
        if device == "auto":  # lm-eval's own default is cuda, which a CPU machine does not have
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        args["device"] = device
        return "hf", args
    if backend == "vllm":
        args = {"pretrained": model, "trust_remote_code": trust_remote_code, "dtype": dtype,
                "tensor_parallel_size": tensor_parallel_size, "gpu_memory_utilization": gpu_memory_utilization,
                "batch_size": "auto"}
        if max_model_len is not None:
            args["max_model_len"] = max_model_len
        return "vllm", args
    raise ValueError(
        f"multiple-choice benchmarks need the model in process (transformers or vllm backend), not {backend!r}: "
        "a served model's chat endpoint gives no log-probabilities of a given continuation"
    )


def run_lm_eval(model_type: str, model_args: Mapping[str, Any], tasks: Sequence[TaskFile], cache_dir: Path,
                limit: int | None = None, chat: bool = False) -> list[BenchmarkScore]:
    """Score one model on ``tasks`` with lm-eval; one :class:`BenchmarkScore` per task, in order."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    if not tasks:
        return []
    configs = [lm_eval_task(t, cache_dir, limit) for t in tasks]
    manager = TaskManager(include_defaults=False)  # our tasks only: indexing lm-eval's own takes ~30 s
    batch_size = model_args.get("batch_size", 1)
    out = lm_eval.simple_evaluate(
        model=model_type, model_args={k: v for k, v in model_args.items() if k != "batch_size"},
        tasks=configs, batch_size=batch_size, limit=limit, log_samples=True, task_manager=manager,
        bootstrap_iters=0, apply_chat_template=chat, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
        fewshot_random_seed=0,
    )
    scores = []
    for task in tasks:
        samples = out["samples"][task.name]
        predicted = Counter(_argmax([r[0] for r in s["filtered_resps"]]) for s in samples)
        scores.append(BenchmarkScore(task.benchmark, task.lang, len(samples),
                                     float(out["results"][task.name]["acc,none"]), dict(predicted)))
    return scores


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))
