"""Instruction verb statistics, by rules: the first verb of an English instruction and its object noun.

X-Instruction reports the verb distribution of its instructions (most common: write news / article /
headline, summarize, create, explain, translate); this module measures the same for any set of instructions,
without a parser (spaCy is not available here):

* Leading bullets, numbering and quotes are skipped, and so are polite or framing prefixes ("Please",
  "Can you", "Could you", "I want you to", "Your task is to", "Help me" ...).
* The verb is the first word when it is (a simple inflection of) a verb of :data:`VERBS`, a list of common
  English imperative task verbs: "Writes"/"Writing"/"Wrote"-style forms are reduced to the lemma by suffix
  rules checked against the list; British "-ise"/"-yse" spellings map to "-ize"/"-yze".
* If the first clause has no such verb, the next clauses are tried ("Based on the text, write ...",
  "You are a journalist. Write ..."); a word followed by a colon is a label ("Task: summarize ...").
* **Questions** ("What is ...", "How do I ...", "Is it true that ...?") are counted as one category,
  ``"question"``: a question's implied task is "answer", and counting "what" and "how" as verbs would split
  one kind of task by wording. :func:`verb_object` keeps the question word as the "object"
  (``("question", "what")``), so the detail is not lost.
* The object noun is the head (last word) of the noun phrase after the verb, skipping leading pronouns,
  articles, quantifiers and numbers, and stopping at a preposition, conjunction, punctuation or a participle:
  "Write a short news article about ..." -> ("write", "article"); plural heads are made singular.
* No verb found: ``None`` (counted as ``"other"``).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

QUESTION = "question"
OTHER = "other"

VERBS: frozenset[str] = frozenset(
    """
    act add adapt adjust advertise advise analyze announce answer apologize apply argue arrange ask assess
    assign assist begin brainstorm break brief build calculate categorize change check choose cite clarify
    classify clean collect combine compare compile complete compose compute conclude condense construct
    continue contrast convert convince correct count craft create critique debate debug decide decode define
    delete demonstrate depict derive describe design detail detect determine develop devise diagnose discuss
    distinguish document draft draw edit elaborate encourage enumerate estimate evaluate examine expand
    explain explore express extract fill find finish fix format formulate gather generate give group guess
    guide help highlight identify illustrate imagine implement improve include infer inform insert interpret
    interview introduce invent invite investigate itemize justify label list locate make map mark match
    measure mention merge modify motivate name narrate note offer organize outline paraphrase persuade
    pick plan play point polish predict prepare present pretend prioritize produce program promote proofread
    propose prove provide publish put rank rate read recall recap recommend record recount rectify reduce
    refine reformulate reframe relate remove rename reorder rephrase replace reply report represent request
    research respond restate restructure retell return review revise rewrite say schedule score
    search select sell separate share shorten show simplify sketch solve sort specify split start state
    structure suggest summarize supply support tag teach tell test think track train transcribe transform
    translate turn tweet underline understand update use validate verify visualize warn welcome write
    """.split()
)

_WH = frozenset("what how why when where who whom whose which".split())
_AUX = frozenset(
    "is are was were am do does did can could will would should shall may might must has have had "
    "isn't aren't don't doesn't didn't can't won't".split()
)
# Framing prefixes removed before looking for the verb (longest first, applied repeatedly).
_PREFIXES: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (
            tuple(p.split())
            for p in (
                "please",
                "kindly",
                "now",
                "then",
                "also",
                "ok",
                "okay",
                "hey",
                "hi",
                "just",
                "briefly",
                "quickly",
                "can you",
                "could you",
                "would you",
                "will you",
                "can u",
                "would you mind",
                "i want you to",
                "i would like you to",
                "i'd like you to",
                "i need you to",
                "i want to",
                "i would like to",
                "i'd like to",
                "help me",
                "help me to",
                "let's",
                "let us",
                "you are asked to",
                "you are required to",
                "your task is to",
                "the task is to",
                "you need to",
                "you should",
                "you must",
                "go ahead and",
                "try to",
                "be sure to",
                "make sure to",
            )
        ),
        key=len,
        reverse=True,
    )
)
_PRONOUNS = frozenset("me us him her them you myself yourself ourselves it".split())
_DETERMINERS = frozenset(
    """a an the this that these those some any each every all both few several many more most another other
    such my your our their his its one two three four five six seven eight nine ten twelve fifteen twenty
    hundred""".split()
)
_STOPS = frozenset(
    """about on of in for to with from into by at as between among regarding without within after before
    during over under through based using like than per via across against towards toward around upon onto
    and or but nor that which who whom whose where when while if whether so because how what why
    is are was were be been being will would should can could may might must do does did has have had not
    this these those the a an""".split()
)
_NOT_PLURAL = frozenset(
    "news series species lyrics mathematics physics economics politics statistics ethics means headquarters "
    "analysis basis thesis synopsis crisis diagnosis emphasis hypothesis status bus campus virus focus bonus "
    "census process business class glass grass address access success stress dress boss loss".split()
)
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’]*(?:-[A-Za-z]+)*|[0-9]+(?:[.,][0-9]+)*|[^\sA-Za-z0-9]")
_CLAUSE_END = re.compile(r"(?<=[.!?:;,])\s+|\n+")
_LEADING_JUNK = re.compile(r"^[^A-Za-z]+")
# Clauses tried per instruction, and how far into the text (characters): a verb later than this is not
# "the instruction's verb" but part of its content.
_MAX_CLAUSES = 4
_MAX_PREFIX_CHARS = 300


def lemma(word: str) -> str | None:
    """The verb of :data:`VERBS` that ``word`` is a simple form of ("Writes" -> "write"), else ``None``."""
    w = word.lower().replace("’", "'")
    if w in VERBS:
        return w
    candidates: list[str] = []
    if w.endswith("ies") or w.endswith("ied"):
        candidates.append(w[:-3] + "y")
    if w.endswith("es"):
        candidates.append(w[:-2])
    if w.endswith("s") and not w.endswith("ss"):
        candidates.append(w[:-1])
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) > len(suffix) + 2:
            stem = w[: -len(suffix)]
            candidates += [stem, stem + "e"]
            if len(stem) > 2 and stem[-1] == stem[-2]:
                candidates.append(stem[:-1])  # planning -> plan
    for candidate in [w, *candidates]:
        for form in (candidate, _american(candidate)):
            if form in VERBS:
                return form
    return None


def _american(word: str) -> str:
    if word.endswith("ise"):
        return word[:-3] + "ize"
    if word.endswith("yse"):
        return word[:-3] + "yze"
    return word


def singular(noun: str) -> str:
    """Simple English singular of a plural noun ("stories" -> "story", "articles" -> "article")."""
    n = noun.lower()
    if n in _NOT_PLURAL or len(n) <= 3 or n.endswith(("ss", "us", "is")):
        return n
    if n.endswith("ies"):
        return n[:-3] + "y"
    if n.endswith(("ches", "shes", "xes", "zes", "sses")):
        return n[:-2]
    if n.endswith("s"):
        return n[:-1]
    return n


def _tokens(clause: str) -> list[str]:
    return _TOKEN.findall(_LEADING_JUNK.sub("", clause))


def _strip_prefixes(tokens: list[str]) -> list[str]:
    lowered = [t.lower().replace("’", "'") for t in tokens]
    start, changed = 0, True
    while changed:
        changed = False
        while start < len(lowered) and lowered[start] in {",", "-", ":"}:
            start += 1
        for prefix in _PREFIXES:
            if tuple(lowered[start : start + len(prefix)]) == prefix:
                start += len(prefix)
                changed = True
                break
    return tokens[start:]


def _clauses(text: str) -> list[str]:
    head = text.strip()[:_MAX_PREFIX_CHARS]
    return [c for c in _CLAUSE_END.split(head) if c.strip()][:_MAX_CLAUSES]


def _analyse(text: str) -> tuple[str, list[str]] | None:
    """(verb or QUESTION, the tokens after it) for the first clause that has one."""
    has_question_mark = "?" in text
    for clause in _clauses(text):
        tokens = _tokens(clause)
        if not tokens:
            continue
        rest = _strip_prefixes(tokens)
        if rest and not (len(rest) > 1 and rest[1] == ":"):  # "Task: ..." is a label, not a verb
            verb = lemma(rest[0])
            if verb is not None:
                return verb, rest[1:]
        for candidate in (rest[:1], tokens[:1]):
            word = candidate[0].lower() if candidate else ""
            if word in _WH or (word in _AUX and has_question_mark):
                return QUESTION, [word]
    return None


def instruction_verb(text: str) -> str | None:
    """The instruction's first verb as a lemma ("write"), ``"question"`` for a question, ``None`` if none."""
    found = _analyse(text)
    return found[0] if found else None


def _object_of(tokens: list[str]) -> str | None:
    phrase: list[str] = []
    for token in tokens:
        word = token.lower().replace("’", "'")
        if not phrase and (word in _PRONOUNS or word in _DETERMINERS or word[0].isdigit()):
            continue
        if not word[0].isalpha() or word in _STOPS or word in _DETERMINERS:
            break
        if phrase and (word.endswith("ing") or word.endswith("ed")):
            break  # "a news article summarizing ..." / "a report based on ..."
        phrase.append(word)
        if len(phrase) == 4:
            break
    return singular(phrase[-1]) if phrase else None


def verb_object(text: str) -> tuple[str, str | None] | None:
    """(verb, object noun) of an instruction: ("write", "article"); ("question", "what") for questions.

    The object is ``None`` when the verb has no noun object ("Tell me about ..."); the result is ``None`` when
    there is no verb.
    """
    found = _analyse(text)
    if found is None:
        return None
    verb, rest = found
    if verb == QUESTION:
        return verb, rest[0] if rest else None
    return verb, _object_of(rest)


def verb_counts(instructions: Iterable[str]) -> Counter[str]:
    """How often each first verb occurs (``"question"`` for questions, ``"other"`` when no verb is found)."""
    return Counter(instruction_verb(text) or OTHER for text in instructions)


def verb_object_counts(instructions: Iterable[str]) -> Counter[str]:
    """How often each "verb object" pair occurs ("write article"); a verb without an object counts alone."""
    counts: Counter[str] = Counter()
    for text in instructions:
        found = verb_object(text)
        if found is None:
            counts[OTHER] += 1
        else:
            verb, obj = found
            counts[f"{verb} {obj}" if obj else verb] += 1
    return counts


def top_verbs(instructions: Iterable[str], n: int = 10) -> list[tuple[str, int]]:
    """The ``n`` most common first verbs with their counts (ties in first-seen order)."""
    return verb_counts(instructions).most_common(n)
