"""The prompts are byte-exact where a released model depends on them, and the decoding settings validate."""

from __future__ import annotations

import dataclasses

import pytest

from xinst_assets.core import prompts
from xinst_assets.core.prompts import DecodingParams


def test_instruction_generation_prompt_is_the_released_format_verbatim() -> None:
    assert prompts.generation_prompt("Hujan turun sejak pagi.") == (
        "Below is a text that describes a candidate output. Write an English instruction that can take the given "
        "text as an appropriate answer.\n\n### Text:\nHujan turun sejak pagi.\n\n### English Instruction:\n"
    )


def test_response_prompt_keeps_the_space_before_the_blank_line() -> None:
    assert prompts.response_prompt("Say hello.", "Finnish") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nSay hello. Answer in Finnish. \n\n### Response:\n"
    )


def test_refined_response_prompt_asks_for_the_style_of_an_ai_assistant() -> None:
    assert prompts.response_prompt("Say hello.", "Thai", refined=True).endswith(
        "### Instruction:\nSay hello. Answer in Thai and the style of an AI assistant. \n\n### Response:\n"
    )


def test_judge_prompt_ends_where_the_model_writes_the_digit() -> None:
    text = prompts.judge_prompt("Explain rain.", "Hujan adalah air.", "Indonesian")
    assert text.endswith("### Response:\nHujan adalah air.\n\n### Rating (1, 2 or 3):\n")
    assert "### Instruction:\nExplain rain.\n\n" in text
    for level in ("3 = good", "2 = fixable", "1 = unusable"):
        assert level in text
    assert prompts.JUDGE_CHOICES == ("1", "2", "3")


def test_refine_prompt_names_the_language_and_asks_to_drop_boilerplate() -> None:
    text = prompts.refine_prompt("Explain rain.", "Menu | Hujan adalah air.", "Swahili")
    assert "Rewrite the draft in Swahili" in text and "boilerplate" in text
    assert text.endswith("### Draft response:\nMenu | Hujan adalah air.\n\n### Rewritten response in Swahili:\n")


def test_pairwise_judge_prompt_says_the_user_speaks_only_the_question_language() -> None:
    text = prompts.pairwise_judge_prompt("Apa itu hujan?", "Air.", "Water.", "Indonesian")
    assert "The user speaks only Indonesian" in text
    assert "[Answer 1]\nAir.\n\n[Answer 2]\nWater.\n\n" in text
    assert "<score1>" in text and "<score2>" in text


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("<score1>7</score1>\n<score2>3</score2> Answer 1 is in Indonesian.", (7.0, 3.0)),
        ("<score1> 10 </score1><score2>0</score2>", (10.0, 0.0)),
        ("<SCORE1>8.5</SCORE1> <score2>9</score2>", (8.5, 9.0)),
        ("<score1>7</score1> only one score", None),
        ("<score1>11</score1><score2>3</score2>", None),
        ("Answer 1 is better.", None),
    ],
)
def test_pairwise_scores_are_parsed_only_when_both_tags_hold_a_score_in_range(reply, expected) -> None:
    assert prompts.parse_pairwise_scores(reply) == expected


def test_afp_cross_lingual_format_is_instruction_answer_in_language_colon_output() -> None:
    assert prompts.afp_cross_lingual_example("Translate: good morning.", "Vietnamese", "Chào buổi sáng.") == (
        "Translate: good morning. Answer in Vietnamese: Chào buổi sáng."
    )
    assert prompts.afp_cross_lingual_prompt("Say hi.", "Thai") == "Say hi. Answer in Thai: "


def test_default_decoding_params_are_the_released_settings() -> None:
    params = prompts.RELEASED_DECODING
    assert (params.do_sample, params.temperature, params.top_p, params.top_k, params.no_repeat_ngram_size) == (
        True, 0.7, 0.9, 50, 6,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.temperature = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 0.0}, "do_sample=False"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"no_repeat_ngram_size": 0}, "no_repeat_ngram_size"),
        ({"stop": ("",)}, "stop"),
    ],
)
def test_bad_decoding_params_are_rejected_with_the_field_named(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        DecodingParams(**kwargs)


def test_greedy_cache_identity_ignores_sampling_knobs_but_sampling_identity_does_not() -> None:
    assert prompts.greedy(8).canonical_json() == dataclasses.replace(prompts.greedy(8), temperature=1.3).canonical_json()
    assert DecodingParams(seed=1).canonical_json() != DecodingParams(seed=2).canonical_json()
    assert DecodingParams(stop=["###"]).stop == ("###",)  # lists from config files become tuples
