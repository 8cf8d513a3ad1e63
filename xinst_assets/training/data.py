"""Training data: read rows, format them with the X-Instruction prompts, tokenize with loss masks, pack.

* ``read_rows`` streams JSONL / JSONL.gz / Parquet files; ``file_fingerprint`` hashes them for lineage.
* ``instruction_example`` turns a row {instruction, response, lang_name, refined} into a ``TextExample``:
  the X-Instruction response prompt -> response (``task="sft"``), or the instruction-generation prompt ->
  instruction (``task="generator"``, the reverse direction that trains the stage-3 generator), or the
  self-curation prompt -> the pair's level "1"/"2"/"3" (``task="curator"``, rows with a ``label``).
* ``tokenize_example`` builds ``input_ids`` = prompt tokens + target tokens + EOS; the loss is on the target
  (and EOS) only: ``labels`` are -100 on every prompt token.
* ``pack_lengths`` + ``PackedDataset`` put several examples into one ``max_length`` block with
  ``position_ids`` restarting at 0 for each example and no attention mask. transformers (5.x) turns such
  position ids into a block-diagonal causal mask on eager/sdpa and into variable-length kernels on flash
  attention, so no example attends to, or is predicted from, another one. The first label of each packed
  example is -100 (it would otherwise be "predicted" from the previous example's last token).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from xinst_assets.core.prompts import (
    JUDGE_CHOICES,
    afp_cross_lingual_prompt,
    generation_prompt,
    judge_prompt,
    response_prompt,
)
from xinst_assets.training.config import DataFile

IGNORE_INDEX = -100  # labels with this value carry no loss (PyTorch's CrossEntropyLoss ignore_index)

# The X-Instruction prompts (byte-exact released formats) and AFP's cross-lingual format live in core.prompts.
_SENTINEL = "\u0000xinst-body\u0000"  # locates the text slot of a prompt template

# --- Rows ---------------------------------------------------------------------------------------------------

PIVOT_CODE, PIVOT_NAME = "en", "English"


class DataError(ValueError):
    """A training file or row that cannot be used; the message names the file, the row and the fix."""


@lru_cache(maxsize=1)
def _registry():
    from xinst_assets.languages import load_registry

    return load_registry()


@lru_cache(maxsize=256)
def language_name(code: str) -> str:
    """English name of a registry language code (``"en"`` is the pivot, English)."""
    if code == PIVOT_CODE:
        return PIVOT_NAME
    return _registry().get(code).name


@lru_cache(maxsize=256)
def language_script(lang_name: str) -> str | None:
    """ISO 15924 script of a language given by English name, or None when the registry does not know it."""
    if lang_name == PIVOT_NAME:
        return "Latn"
    for lang in _registry():
        if lang.name == lang_name:
            return lang.script
    return None


def read_rows(file: DataFile, max_rows: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based row number, row dict) from a JSONL, JSONL.gz or Parquet file, streaming."""
    path = Path(file.path)
    if not path.is_file():
        raise DataError(f"training file not found: {path}")
    name = path.name.lower()
    count = 0
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                count += 1
                if max_rows is not None and count > max_rows:
                    return
                yield count, row
        return
    if not name.endswith((".jsonl", ".jsonl.gz", ".json")):
        raise DataError(f"{path}: unsupported file type; use .jsonl, .jsonl.gz or .parquet")
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
            count += 1
            if max_rows is not None and count > max_rows:
                return
            yield line_no, row


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes (for the lineage record)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def row_lang_name(row: dict[str, Any], file: DataFile, where: str) -> str:
    """The English name of a row's language: its ``lang_name``, else its ``lang`` code, else the file's."""
    name = row.get("lang_name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    code = row.get("lang") or file.lang
    if code:
        try:
            return language_name(str(code))
        except KeyError as exc:
            raise DataError(f"{where}: {exc}") from exc
    raise DataError(
        f"{where}: the row has no 'lang_name' (or 'lang') and the file names no language; add a lang_name "
        f'column or give the file as {{"path": "{file.path}", "lang": "<code>"}}'
    )


# --- Text examples ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextExample:
    """A prompt and the target the loss is on.

    ``body_span`` (start, end) marks the part of the prompt that is shortened when the example is longer than
    ``max_length`` (the web text inside the generator prompt); without it the target is cut instead.
    """

    prompt: str
    target: str
    kind: str = "sft"
    body_span: tuple[int, int] | None = None
    # The prompt is laid out by the tokenizer's chat template, which writes the special tokens it wants: none
    # are added when tokenizing it (as the inference backends do in chat mode).
    chat: bool = False

    @property
    def special_tokens(self) -> bool:
        return not self.chat


def _text_field(row: dict[str, Any], key: str, where: str) -> str | None:
    if key not in row:
        raise DataError(f"{where}: missing column {key!r} (columns: {sorted(row)})")
    value = row[key]
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(f"{where}: column {key!r} must be a string, got {type(value).__name__}")
    value = value.strip()
    return value or None


def instruction_example(
    row: dict[str, Any], task: str, file: DataFile, where: str
) -> tuple[TextExample | None, str | None]:
    """Format one instruction row for ``task``; return (example, None) or (None, drop reason)."""
    instruction = _text_field(row, "instruction", where)
    response = _text_field(row, "response", where)
    if instruction is None:
        return None, "empty_instruction"
    if response is None:
        return None, "empty_response"
    if task == "generator":
        prompt = generation_prompt(response)
        start = len(generation_prompt(_SENTINEL).split(_SENTINEL)[0])
        return TextExample(prompt, instruction, "generator", body_span=(start, start + len(response))), None
    if task == "curator":
        return curator_example(row, instruction, response, file, where), None
    if task != "sft":
        raise ValueError(f"unknown task {task!r}")
    refined = row.get("refined") or False
    if not isinstance(refined, (bool, int)):
        raise DataError(f"{where}: column 'refined' must be a boolean, got {refined!r}")
    lang_name = row_lang_name(row, file, where)
    return TextExample(response_prompt(instruction, lang_name, bool(refined)), response, "sft"), None


def curator_example(row: dict[str, Any], instruction: str, response: str, file: DataFile, where: str) -> TextExample:
    """The self-curation prompt of a pair -> its level; a long response is the part shortened to fit."""
    label = row.get("label")
    if isinstance(label, bool) or str(label) not in JUDGE_CHOICES:
        raise DataError(f"{where}: a curator row needs a 'label' among {', '.join(JUDGE_CHOICES)}, got {label!r}")
    lang_name = row_lang_name(row, file, where)
    start = len(judge_prompt(instruction, _SENTINEL, lang_name).split(_SENTINEL)[0])
    return TextExample(judge_prompt(instruction, response, lang_name), str(label), "curator",
                       body_span=(start, start + len(response)))


def as_chat(tokenizer: Any, example: TextExample) -> TextExample:
    """``example`` with its prompt laid out as one user turn of ``tokenizer``'s chat template, exactly as the
    inference backends send it in chat mode; the shortenable body is found again inside the layout."""
    from xinst_assets.inference.chat import chat_prompt

    laid = chat_prompt(tokenizer, example.prompt)
    span = None
    if example.body_span is not None:
        offset = laid.find(example.prompt)
        if offset >= 0:  # the template shows the prompt verbatim (templates that rewrite it get no body to cut)
            span = (example.body_span[0] + offset, example.body_span[1] + offset)
    return TextExample(laid, example.target, example.kind, span, chat=True)


def afp_cross_lingual_example(row: dict[str, Any], file: DataFile, where: str) -> TextExample | None:
    """An instruction row in AFP's cross-lingual format (None for an empty row)."""
    instruction = _text_field(row, "instruction", where)
    response = _text_field(row, "response", where)
    if instruction is None or response is None:
        return None
    lang_name = row_lang_name(row, file, where)
    return TextExample(afp_cross_lingual_prompt(instruction, lang_name), response, "afp_cross_lingual")


# --- Tokenization -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids of prompt + target (+ EOS unless the target was cut) and where the target starts."""

    input_ids: tuple[int, ...]
    prompt_len: int
    truncated: bool = False

    @property
    def labels(self) -> list[int]:
        """-100 on prompt tokens, the token ids on target tokens (and EOS)."""
        return [IGNORE_INDEX] * self.prompt_len + list(self.input_ids[self.prompt_len :])


def _eos_id(tokenizer: Any) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; training needs one to teach the model to stop")
    return int(tokenizer.eos_token_id)


def tokenize_example(
    tokenizer: Any, example: TextExample, max_length: int
) -> tuple[TokenizedExample | None, str | None]:
    """Tokenize one example; return (tokenized, None) or (None, drop reason).

    The prompt is tokenized on its own, exactly as it is at inference, with the tokenizer's special tokens
    (BOS where the model uses one); the target follows without special tokens, then EOS.
    """
    prompt_ids = tokenizer(example.prompt, add_special_tokens=example.special_tokens)["input_ids"]
    target_ids = tokenizer(example.target, add_special_tokens=False)["input_ids"]
    return _assemble(tokenizer, example, prompt_ids, target_ids, max_length)


def _assemble(
    tokenizer: Any, example: TextExample, prompt_ids: list[int], target_ids: list[int], max_length: int
) -> tuple[TokenizedExample | None, str | None]:
    eos = _eos_id(tokenizer)
    if not target_ids:
        return None, "empty_target"
    prompt, span = example.prompt, example.body_span
    for _ in range(4):  # shortening the body converges in one or two rounds (token merges at the cut)
        excess = len(prompt_ids) + len(target_ids) + 1 - max_length
        if excess <= 0:
            return TokenizedExample(tuple(prompt_ids) + tuple(target_ids) + (eos,), len(prompt_ids)), None
        if span is None:
            room = max_length - len(prompt_ids)
            if room < 1:
                return None, "prompt_too_long"
            # A cut target gets no EOS: the model must not learn to stop mid-text.
            return TokenizedExample(tuple(prompt_ids) + tuple(target_ids[:room]), len(prompt_ids), True), None
        start, end = span
        body_ids = tokenizer(prompt[start:end], add_special_tokens=False)["input_ids"]
        keep = len(body_ids) - excess - 2
        if keep <= 0:
            return None, "prompt_too_long"
        short = tokenizer.decode(body_ids[:keep]).rstrip("\ufffd").rstrip()
        prompt, span = prompt[:start] + short + prompt[end:], (start, start + len(short))
        prompt_ids = tokenizer(prompt, add_special_tokens=example.special_tokens)["input_ids"]
    return None, "prompt_too_long"


class TokenizedDataset:
    """Tokenized examples in flat numpy arrays (compact: no Python list per example).

    Items are dicts of ``input_ids`` and ``labels`` (int64 arrays).
    """

    def __init__(self, flat_ids: np.ndarray, offsets: np.ndarray, prompt_lens: np.ndarray) -> None:
        self.flat_ids, self.offsets, self.prompt_lens = flat_ids, offsets, prompt_lens

    @classmethod
    def from_tokenized(cls, examples: Sequence[TokenizedExample]) -> TokenizedDataset:
        lengths = np.array([len(e.input_ids) for e in examples], dtype=np.int64)
        offsets = np.zeros(len(examples) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        parts = [np.asarray(e.input_ids, dtype=np.int64) for e in examples]
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return cls(flat, offsets, np.array([e.prompt_len for e in examples], dtype=np.int64))

    def __len__(self) -> int:
        return len(self.prompt_lens)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        ids = self.flat_ids[self.offsets[index] : self.offsets[index + 1]]
        labels = ids.copy()
        labels[: self.prompt_lens[index]] = IGNORE_INDEX
        return {"input_ids": ids.copy(), "labels": labels}


def tokenize_examples(
    tokenizer: Any, examples: Sequence[TextExample], max_length: int, batch_size: int = 1000
) -> tuple[TokenizedDataset, Counter]:
    """Tokenize ``examples`` (in batches: fast tokenizers encode a batch in parallel); return the dataset and
    a count of kept examples, cut targets and drops by reason."""
    kept: list[TokenizedExample] = []
    stats: Counter = Counter()
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        plain = [k for k, e in enumerate(chunk) if e.special_tokens]
        laid_out = [k for k, e in enumerate(chunk) if not e.special_tokens]
        prompts: list[Any] = [None] * len(chunk)
        for indices, special in ((plain, True), (laid_out, False)):
            if indices:
                ids = tokenizer([chunk[k].prompt for k in indices], add_special_tokens=special)["input_ids"]
                for k, row in zip(indices, ids):
                    prompts[k] = row
        targets = tokenizer([e.target for e in chunk], add_special_tokens=False)["input_ids"]
        for example, prompt_ids, target_ids in zip(chunk, prompts, targets):
            tokenized, reason = _assemble(tokenizer, example, prompt_ids, target_ids, max_length)
            if tokenized is None:
                stats[f"dropped_{reason}"] += 1
                continue
            stats["kept"] += 1
            stats["target_truncated"] += int(tokenized.truncated)
            kept.append(tokenized)
    return TokenizedDataset.from_tokenized(kept), stats


# --- Packing ------------------------------------------------------------------------------------------------


def pack_lengths(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Group example indices into blocks of at most ``max_length`` tokens (best-fit decreasing).

    Longest examples first, each into the fullest block it still fits; a block never splits an example.
    Deterministic for given lengths. Free space is tracked per capacity value, so the cost is
    O(n * max_length / 64) at worst, about a second for 300k examples.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    blocks: list[list[int]] = []
    by_free: list[list[int]] = [[] for _ in range(max_length + 1)]  # free capacity -> block ids
    has_free = np.zeros(max_length + 1, dtype=bool)
    for index in order:
        size = int(lengths[index])
        if size > max_length:
            raise ValueError(f"example {index} has {size} tokens, more than max_length {max_length}")
        candidates = np.flatnonzero(has_free[size:])
        if len(candidates):
            free = size + int(candidates[0])
            block = by_free[free].pop()
            if not by_free[free]:
                has_free[free] = False
        else:
            free, block = max_length, len(blocks)
            blocks.append([])
        blocks[block].append(index)
        left = free - size
        if left > 0:
            by_free[left].append(block)
            has_free[left] = True
    return blocks


class PackedDataset:
    """Blocks of packed examples: ``input_ids``, ``labels`` and ``position_ids`` restarting per example."""

    def __init__(self, base: TokenizedDataset, max_length: int) -> None:
        self.base = base
        self.blocks = pack_lengths(base.lengths.tolist(), max_length)

    def __len__(self) -> int:
        return len(self.blocks)

    @property
    def num_tokens(self) -> int:
        return self.base.num_tokens

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        items = [self.base[i] for i in self.blocks[index]]
        labels = []
        for item in items:
            part = item["labels"].copy()
            part[0] = IGNORE_INDEX  # never predicted from the previous example's last token
            labels.append(part)
        return {
            "input_ids": np.concatenate([item["input_ids"] for item in items]),
            "labels": np.concatenate(labels),
            "position_ids": np.concatenate([np.arange(len(item["input_ids"])) for item in items]),
        }


# --- Collators ----------------------------------------------------------------------------------------------


class PadCollator:
    """Right-pads examples to the longest in the batch (labels -100 and attention 0 on padding)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.as_tensor(np.asarray(feature["input_ids"]), dtype=torch.long)
            labels[row, :n] = torch.as_tensor(np.asarray(feature["labels"]), dtype=torch.long)
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask, "real_tokens": int(mask.sum())}


class PackedCollator:
    """Collates packed blocks without an attention mask; sequence boundaries are in ``position_ids``.

    ``flatten=True`` concatenates the whole batch into one row (padding-free), which flash attention needs
    (it reads packed sequences only from a batch of one row). ``flatten=False`` keeps one row per block and
    fills short rows with a padding segment whose positions restart at 0, so it is a sequence of its own that
    no real token attends to, and whose labels are -100.
    """

    def __init__(self, pad_token_id: int, flatten: bool = False) -> None:
        self.pad_token_id, self.flatten = pad_token_id, flatten

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        real = sum(len(f["input_ids"]) for f in features)
        if self.flatten:
            batch = {
                key: torch.as_tensor(
                    np.concatenate([np.asarray(f[key]) for f in features]), dtype=torch.long
                )[None]
                for key in ("input_ids", "labels", "position_ids")
            }
            batch["real_tokens"] = real
            return batch
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.as_tensor(np.asarray(feature["input_ids"]), dtype=torch.long)
            labels[row, :n] = torch.as_tensor(np.asarray(feature["labels"]), dtype=torch.long)
            positions[row, :n] = torch.as_tensor(np.asarray(feature["position_ids"]), dtype=torch.long)
            positions[row, n:] = torch.arange(width - n)
        return {"input_ids": ids, "labels": labels, "position_ids": positions, "real_tokens": real}
