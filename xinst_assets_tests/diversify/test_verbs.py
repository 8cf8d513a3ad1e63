import pytest

from xinst_assets.core.verbs import (
    OTHER,
    QUESTION,
    instruction_verb,
    lemma,
    singular,
    top_verbs,
    verb_counts,
    verb_object,
    verb_object_counts,
)


@pytest.mark.parametrize(
    "instruction, verb, obj",
    [
        ("Write a short news article about the floods in Kenya.", "write", "article"),
        ("Please summarize the following text in three sentences.", "summarize", "text"),
        ("Could you please translate this sentence into Swahili?", "translate", "sentence"),
        ("Can you explain how vaccines work?", "explain", None),
        ("Create a recipe for chicken curry.", "create", "recipe"),
        ("Generate headlines for the following news", "generate", "headline"),
        ("Give me three tips for staying healthy.", "give", "tip"),
        ("Tell me about the history of Hanoi.", "tell", None),
        ("I want you to write a blog post about travel.", "write", "post"),
        ("Help me write a cover letter", "write", "letter"),
        ("Write a news article summarizing the match.", "write", "article"),
        ("1. Describe the stories of the village", "describe", "story"),
        ("Based on the text, write a headline for it.", "write", "headline"),
        ("You are a journalist. Write a report on the election.", "write", "report"),
        ("In 200 words, explain why the sky is blue.", "explain", None),
        ("Task: summarize the article", "summarize", "article"),
        ("Summarise the main points of the speech.", "summarize", "point"),
        ("Analyse the data", "analyze", "data"),
        ("Writes a poem", "write", "poem"),
        ("Creating a list of tips for new parents", "create", "list"),
        ("Planning a wedding on a budget", "plan", "wedding"),
        ("Let's plan a trip to Bali.", "plan", "trip"),
        ("Provide a detailed analysis of the results.", "provide", "analysis"),
    ],
)
def test_the_first_verb_and_its_object(instruction, verb, obj):
    assert instruction_verb(instruction) == verb
    assert verb_object(instruction) == (verb, obj)


@pytest.mark.parametrize(
    "instruction, word",
    [
        ("What is the capital of Thailand?", "what"),
        ("How do I cook rice?", "how"),
        ("Is it safe to swim in the lake?", "is"),
        ("Can I pay with a card at the market?", "can"),
        ("Please, why is the sea salty?", "why"),
    ],
)
def test_questions_are_one_category_that_keeps_the_question_word(instruction, word):
    assert instruction_verb(instruction) == QUESTION
    assert verb_object(instruction) == (QUESTION, word)


@pytest.mark.parametrize(
    "instruction", ["Description of a house", "Ingredients for a cake", "", "  ", "12345"]
)
def test_no_verb_gives_none(instruction):
    assert instruction_verb(instruction) is None
    assert verb_object(instruction) is None


def test_an_auxiliary_without_a_question_mark_is_not_a_question():
    assert instruction_verb("Do not forget the keys") is None


@pytest.mark.parametrize(
    "word, expected",
    [
        ("Writes", "write"),
        ("writing", "write"),
        ("Summarized", "summarize"),
        ("summarises", "summarize"),
        ("planning", "plan"),
        ("identifies", "identify"),
        ("Lists", "list"),
        ("news", None),
        ("house", None),
    ],
)
def test_simple_verb_forms_are_reduced_to_the_lemma(word, expected):
    assert lemma(word) == expected


@pytest.mark.parametrize(
    "noun, expected",
    [
        ("articles", "article"),
        ("stories", "story"),
        ("boxes", "box"),
        ("news", "news"),
        ("analysis", "analysis"),
        ("class", "class"),
        ("tips", "tip"),
        ("status", "status"),
    ],
)
def test_plural_nouns_are_made_singular(noun, expected):
    assert singular(noun) == expected


def test_counters_over_a_set_of_instructions():
    instructions = [
        "Write a news article about the floods.",
        "Write a news article about the election.",
        "Write a poem about rain.",
        "Summarize the report.",
        "What is the capital of Kenya?",
        "Description of a house",
    ]
    assert verb_counts(instructions) == {"write": 3, "summarize": 1, QUESTION: 1, OTHER: 1}
    assert verb_object_counts(instructions) == {
        "write article": 2,
        "write poem": 1,
        "summarize report": 1,
        "question what": 1,
        OTHER: 1,
    }
    assert top_verbs(instructions, 2) == [("write", 3), ("summarize", 1)]
