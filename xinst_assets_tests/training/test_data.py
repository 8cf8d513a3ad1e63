"""Formatting, tokenization and loss masks of the training data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xinst_assets.training.config import DataFile
from xinst_assets.training.data import (
    IGNORE_INDEX,
    DataError,
    TextExample,
    as_chat,
    generation_prompt,
    instruction_example,
    read_rows,
    response_prompt,
    tokenize_example,
    tokenize_examples,
)
from xinst_assets_tests.training.conftest import INSTRUCTION_ROWS, write_jsonl

RESPONSE_PROMPT_FI = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\nSay hello. Answer in Finnish. \n\n### Response:\n"
)


def test_the_response_prompt_is_the_released_x_instruction_format():
    assert response_prompt("Say hello.", "Finnish") == RESPONSE_PROMPT_FI


def test_refined_rows_ask_for_the_style_of_an_ai_assistant():
    prompt = response_prompt("Say hello.", "Finnish", refined=True)
    assert "Say hello. Answer in Finnish and the style of an AI assistant. \n\n### Response:\n" in prompt
    row = {"instruction": "Say hello.", "response": "Hei!", "lang_name": "Finnish", "refined": True}
    example, _ = instruction_example(row, "sft", DataFile("x.jsonl"), "x.jsonl:1")
    assert example.prompt == prompt


def test_the_generation_prompt_puts_the_text_between_its_headers():
    prompt = generation_prompt("Hei maailma.")
    assert prompt.startswith(
        "Below is a text that describes a candidate output. Write an English instruction"
    )
    assert prompt.endswith("### Text:\nHei maailma.\n\n### English Instruction:\n")


def test_sft_labels_are_minus_100_exactly_on_the_prompt_tokens_and_end_with_eos(tokenizer):
    row = INSTRUCTION_ROWS[0]
    example, _ = instruction_example(row, "sft", DataFile("x.jsonl"), "x.jsonl:1")
    tokenized, reason = tokenize_example(tokenizer, example, max_length=512)
    assert reason is None
    prompt_ids = tokenizer(example.prompt)["input_ids"]
    labels = tokenized.labels
    assert list(tokenized.input_ids[: len(prompt_ids)]) == prompt_ids
    assert labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert all(label != IGNORE_INDEX for label in labels[len(prompt_ids) :])
    assert labels[len(prompt_ids) :] == list(tokenized.input_ids[len(prompt_ids) :])
    assert labels[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(labels[len(prompt_ids) : -1]) == row["response"]


def test_the_generator_task_puts_the_loss_on_the_instruction_only(tokenizer):
    row = INSTRUCTION_ROWS[2]
    example, _ = instruction_example(row, "generator", DataFile("x.jsonl"), "x.jsonl:1")
    assert example.prompt == generation_prompt(row["response"])
    tokenized, _ = tokenize_example(tokenizer, example, max_length=512)
    target = [t for t in tokenized.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(target[:-1]) == row["instruction"]
    assert target[-1] == tokenizer.eos_token_id
    assert row["response"] in tokenizer.decode(tokenized.input_ids[: tokenized.prompt_len])


def test_the_curator_task_asks_the_self_curation_prompt_and_puts_the_loss_on_the_label(tokenizer):
    from xinst_assets.core.prompts import judge_prompt
    from xinst_assets.inference.chat import chat_prompt

    row = {**INSTRUCTION_ROWS[0], "label": 3}
    example, _ = instruction_example(row, "curator", DataFile("x.jsonl"), "x.jsonl:1")
    assert example.prompt == judge_prompt(row["instruction"], row["response"], "Indonesian")
    assert example.target == "3"
    # Laid out as the curator role is asked (one user turn of the chat template, no special tokens added).
    chat = as_chat(tokenizer, example)
    assert chat.prompt == chat_prompt(tokenizer, example.prompt) and chat.chat
    tokenized, _ = tokenize_example(tokenizer, chat, max_length=1024)
    assert list(tokenized.input_ids[: tokenized.prompt_len]) == \
        tokenizer(chat.prompt, add_special_tokens=False)["input_ids"]
    target = [t for t in tokenized.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(target[:-1]) == "3" and target[-1] == tokenizer.eos_token_id


def test_a_long_curator_response_is_shortened_inside_the_chat_prompt_and_the_label_kept(tokenizer):
    row = {"instruction": "Describe the market.", "response": "Pasar pagi di desa kami selalu ramai. " * 60,
           "lang_name": "Indonesian", "label": "2"}
    example, _ = instruction_example(row, "curator", DataFile("x.jsonl"), "x.jsonl:1")
    tokenized, reason = tokenize_example(tokenizer, as_chat(tokenizer, example), max_length=400)
    assert reason is None and len(tokenized.input_ids) <= 400
    assert tokenizer.decode(tokenized.input_ids[: tokenized.prompt_len]).endswith("### Rating (1, 2 or 3):\n<|assistant|>\n")
    target = [t for t in tokenized.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(target[:-1]) == "2"


def test_a_curator_row_without_a_valid_label_names_the_row():
    for label in (None, 4, "good", True):
        row = {**INSTRUCTION_ROWS[0], "label": label}
        with pytest.raises(DataError, match="x.jsonl:7: a curator row needs a 'label' among 1, 2, 3"):
            instruction_example(row, "curator", DataFile("x.jsonl"), "x.jsonl:7")


def test_a_long_response_is_cut_to_max_length_without_eos(tokenizer):
    example = TextExample(response_prompt("Write a lot.", "Indonesian"), "Pasar pagi selalu ramai. " * 40)
    tokenized, _ = tokenize_example(tokenizer, example, max_length=80)
    assert len(tokenized.input_ids) == 80 and tokenized.truncated
    assert tokenized.input_ids[-1] != tokenizer.eos_token_id
    assert tokenized.labels[: tokenized.prompt_len] == [IGNORE_INDEX] * tokenized.prompt_len


def test_a_long_generator_text_is_cut_inside_the_prompt_and_the_instruction_kept_whole(tokenizer):
    text = "Pasar pagi di desa kami selalu ramai. " * 40
    row = {"instruction": "Describe the market.", "response": text}
    example, _ = instruction_example(row, "generator", DataFile("x.jsonl"), "x.jsonl:1")
    tokenized, _ = tokenize_example(tokenizer, example, max_length=120)
    assert len(tokenized.input_ids) <= 120
    prompt = tokenizer.decode(tokenized.input_ids[: tokenized.prompt_len])
    assert prompt.endswith("\n\n### English Instruction:\n")
    target = [t for t in tokenized.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(target[:-1]) == "Describe the market." and target[-1] == tokenizer.eos_token_id


def test_a_prompt_longer_than_max_length_drops_the_example_with_a_reason(tokenizer):
    example = TextExample(response_prompt("word " * 200, "Indonesian"), "Ya.")
    assert tokenize_example(tokenizer, example, max_length=64) == (None, "prompt_too_long")


def test_empty_fields_drop_the_row_with_a_reason_and_a_missing_column_is_an_error():
    file = DataFile("x.jsonl")
    assert instruction_example(
        {"instruction": " ", "response": "a", "lang_name": "Thai"}, "sft", file, "w"
    ) == (
        None,
        "empty_instruction",
    )
    assert instruction_example({"instruction": "a", "response": None, "lang_name": "Thai"}, "sft", file, "w")[
        1
    ] == ("empty_response")
    with pytest.raises(DataError, match="missing column 'response'"):
        instruction_example({"instruction": "a"}, "sft", file, "x.jsonl:3")


def test_the_language_comes_from_the_row_then_the_file_and_its_absence_names_the_fix():
    row = {"instruction": "Say hello.", "response": "Xin chào."}
    example, _ = instruction_example(row, "sft", DataFile("vi.jsonl", lang="vi"), "vi.jsonl:1")
    assert "Answer in Vietnamese. " in example.prompt
    example, _ = instruction_example({**row, "lang": "th"}, "sft", DataFile("vi.jsonl", lang="vi"), "w")
    assert "Answer in Thai. " in example.prompt
    with pytest.raises(DataError, match=r"vi.jsonl:7: .*lang_name.*\"lang\": \"<code>\""):
        instruction_example(row, "sft", DataFile("vi.jsonl"), "vi.jsonl:7")


def test_rows_are_read_from_jsonl_gzip_and_parquet(tmp_path: Path):
    rows = INSTRUCTION_ROWS[:3]
    plain = write_jsonl(tmp_path / "a.jsonl", rows)
    packed = tmp_path / "a.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    parquet = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    for path in (plain, packed, parquet):
        assert [r for _, r in read_rows(DataFile(str(path)))] == rows
    assert len(list(read_rows(DataFile(str(plain)), max_rows=2))) == 2


def test_a_broken_line_is_reported_with_its_file_and_line(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(INSTRUCTION_ROWS[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        list(read_rows(DataFile(str(path))))
    with pytest.raises(DataError, match="training file not found"):
        list(read_rows(DataFile(str(tmp_path / "missing.jsonl"))))


def test_tokenize_examples_counts_kept_cut_and_dropped(tokenizer):
    examples = [
        TextExample(response_prompt("Hi.", "Thai"), "Sawasdee."),
        TextExample(response_prompt("Hi.", "Thai"), "long " * 300),
        TextExample(response_prompt("word " * 300, "Thai"), "x"),
    ]
    dataset, stats = tokenize_examples(tokenizer, examples, max_length=96)
    assert len(dataset) == 2
    assert stats == {"kept": 2, "target_truncated": 1, "dropped_prompt_too_long": 1}
    item = dataset[0]
    assert item["labels"].tolist()[-1] == tokenizer.eos_token_id
