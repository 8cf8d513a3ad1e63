"""Every prompt xinst sends to a model, as named constants and the small functions that fill them.

Two texts are the released X-Instruction formats and must stay byte-exact (the released models were trained on
them): :data:`INSTRUCTION_GENERATION_PROMPT` and :data:`RESPONSE_PROMPT` (note the space after the "Answer in
..." sentence, before the blank line). The self-curation prompts (judging, refinement) and the pairwise judge
are xinst's own wording of what the papers describe (METHOD.md stages 4 and 7). AFP's cross-lingual format is
AFP's. Decoding settings live here too, as :class:`DecodingParams`, because they belong to the prompt they
were released with.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace

# --- Stage 3: instruction generation (X-Instruction's released format, verbatim) ---------------------------
INSTRUCTION_GENERATION_PROMPT = (
    "Below is a text that describes a candidate output. Write an English instruction that can take the given"
    " text as an appropriate answer.\n\n### Text:\n{text}\n\n### English Instruction:\n"
)

# --- Stage 6: response prompt (X-Instruction's released format, verbatim) ----------------------------------
RESPONSE_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{instruction} {answer_in} \n\n### Response:\n"
)
ANSWER_IN = "Answer in {lang_name}."
# Refined samples (rewritten by the model in stage 4) are trained with this variant.
ANSWER_IN_REFINED = "Answer in {lang_name} and the style of an AI assistant."

# --- Stage 4: self-curation, 3-level judgement (xinst's wording) -------------------------------------------
# The prompt ends with a newline right where the model must write the digit: after a newline, "1" / "2" / "3"
# are plain single tokens in the common tokenizers (no leading-space variant needed), which keeps
# constrained-choice scoring well defined (see xinst_assets.inference.base.choice_token_variants).
JUDGE_CHOICES: tuple[str, ...] = ("1", "2", "3")
JUDGE_PROMPT = (
    "Below is an instruction and a candidate response written in {lang_name}. Rate how well the response"
    " answers the instruction, using this scale:\n"
    "3 = good: the response is a complete, relevant answer to the instruction, written in {lang_name}, and it"
    " can be used as it is.\n"
    "2 = fixable: the response is related to the instruction but only answers part of it, contains noise (web"
    " boilerplate such as menus, adverts, cookie notices, share buttons or links), or does not read like an"
    " answer to the instruction.\n"
    "1 = unusable: the response is unrelated to the instruction, is not in {lang_name}, or is not usable"
    " text.\n"
    "Reply with the digit only.\n\n"
    "### Instruction:\n{instruction}\n\n"
    "### Response:\n{response}\n\n"
    "### Rating (1, 2 or 3):\n"
)

# --- Stage 4: refinement of level-2 pairs (xinst's wording) -------------------------------------------------
REFINE_PROMPT = (
    "Below is an instruction and a draft response taken from a web page. Rewrite the draft in {lang_name} so"
    " that it answers the instruction directly and completely. Keep the facts of the draft, remove web"
    " boilerplate (menus, adverts, cookie notices, share buttons, links, posting dates, comments) and add"
    " nothing the instruction does not ask for.\n\n"
    "### Instruction:\n{instruction}\n\n"
    "### Draft response:\n{response}\n\n"
    "### Rewritten response in {lang_name}:\n"
)

# --- Stage 7: pairwise judging (X-Instruction's evaluation protocol, xinst's wording) -----------------------
PAIRWISE_JUDGE_PROMPT = (
    "You are a fair and strict judge. A user asked the question below and received two answers. The user"
    " speaks only {lang_name}: an answer in any other language is of no use to them, however good its"
    " content.\n\n"
    "Rate each answer on a scale from 0 (useless) to 10 (excellent) for helpfulness, relevance, accuracy,"
    " level of detail, and whether it is written in {lang_name}. Judge the content: neither the length of an"
    " answer nor the order in which the answers are shown should influence you.\n\n"
    "[Question]\n{question}\n\n"
    "[Answer 1]\n{answer1}\n\n"
    "[Answer 2]\n{answer2}\n\n"
    "Write the two scores first, in exactly this format, then one or two sentences explaining them:\n"
    "<score1>score of answer 1</score1>\n<score2>score of answer 2</score2>\n"
)
PAIRWISE_SCORE_RANGE = (0, 10)
_SCORE_TAG = {i: re.compile(rf"<score{i}>\s*(\d+(?:\.\d+)?)\s*</score{i}>", re.IGNORECASE) for i in (1, 2)}

# --- AFP's cross-lingual instruction format ------------------------------------------------------------------
# Instruction and output are in different languages; "{lang}" is the English name of the output's language.
AFP_CROSS_LINGUAL_FORMAT = "{instruction} Answer in {lang_name}: {output}"


def generation_prompt(text: str) -> str:
    """X-Instruction's instruction-generation prompt: the web text is the candidate answer."""
    return INSTRUCTION_GENERATION_PROMPT.format(text=text)


def response_prompt(instruction: str, lang_name: str, refined: bool = False) -> str:
    """X-Instruction's response prompt; ``refined`` samples ask for "the style of an AI assistant"."""
    answer_in = (ANSWER_IN_REFINED if refined else ANSWER_IN).format(lang_name=lang_name)
    return RESPONSE_PROMPT.format(instruction=instruction, answer_in=answer_in)


def judge_prompt(instruction: str, response: str, lang_name: str) -> str:
    """The 3-level self-curation prompt; it ends where the model writes one of :data:`JUDGE_CHOICES`."""
    return JUDGE_PROMPT.format(instruction=instruction, response=response, lang_name=lang_name)


def refine_prompt(instruction: str, response: str, lang_name: str) -> str:
    """The refinement prompt for a level-2 pair: rewrite ``response`` in ``lang_name`` to answer the instruction."""
    return REFINE_PROMPT.format(instruction=instruction, response=response, lang_name=lang_name)


def pairwise_judge_prompt(question: str, answer1: str, answer2: str, lang_name: str) -> str:
    """The pairwise judge prompt; run every comparison in both orders to cancel position bias."""
    return PAIRWISE_JUDGE_PROMPT.format(question=question, answer1=answer1, answer2=answer2, lang_name=lang_name)


def parse_pairwise_scores(text: str) -> tuple[float, float] | None:
    """The two scores of a pairwise judgement, or ``None`` when a tag is missing or a score is outside 0-10."""
    scores = []
    for i in (1, 2):
        match = _SCORE_TAG[i].search(text)
        if match is None:
            return None
        value = float(match.group(1))
        if not PAIRWISE_SCORE_RANGE[0] <= value <= PAIRWISE_SCORE_RANGE[1]:
            return None
        scores.append(value)
    return scores[0], scores[1]


def afp_cross_lingual_prompt(instruction: str, lang_name: str) -> str:
    """AFP's cross-lingual instruction format up to (and including the space before) the output."""
    return AFP_CROSS_LINGUAL_FORMAT.format(instruction=instruction, lang_name=lang_name, output="")


def afp_cross_lingual_example(instruction: str, lang_name: str, output: str) -> str:
    """A whole AFP cross-lingual example: ``{instruction} Answer in {lang}: {output}``."""
    return AFP_CROSS_LINGUAL_FORMAT.format(instruction=instruction, lang_name=lang_name, output=output)


# --- Decoding ------------------------------------------------------------------------------------------------

# Long enough for X-Instruction's instructions (about 100 characters, ~30-40 tokens) with room to spare; the
# response-length stages (refinement, evaluation answers) pass a larger value (responses average 1,000-1,300
# characters, i.e. roughly 300-600 tokens depending on script and tokenizer).
DEFAULT_MAX_NEW_TOKENS = 256


@dataclass(frozen=True)
class DecodingParams:
    """How to decode; the defaults are X-Instruction's released settings (sampling, T 0.7, top-p 0.9, top-k 50,
    no repeated 6-grams).

    ``None`` turns a rule off (``top_k=None``: no top-k cut; ``no_repeat_ngram_size=None``: repeats allowed;
    ``seed=None``: unseeded). ``do_sample=False`` is greedy decoding (temperature, top-p and top-k are then
    ignored). ``stop`` strings end a generation early (they are not part of the returned text).
    ``max_new_tokens`` is always set: it is the guard against endless output.
    """

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int | None = 50
    no_repeat_ngram_size: int | None = 6
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = True
    seed: int | None = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.stop, (list, str)):  # accept a list (or one string) from config files
            object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str) else tuple(self.stop))
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.do_sample and self.temperature == 0:
            raise ValueError("temperature 0 with do_sample=True: use do_sample=False for greedy decoding")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None (off), got {self.top_k}")
        if self.no_repeat_ngram_size is not None and self.no_repeat_ngram_size < 1:
            raise ValueError(f"no_repeat_ngram_size must be >= 1 or None (off), got {self.no_repeat_ngram_size}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, got {self.stop!r}")

    def to_dict(self) -> dict:
        """The parameters as plain JSON-able values (for metadata and cache keys)."""
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data

    def canonical_json(self) -> str:
        """A stable JSON text of the parameters that matter for the output (cache keys hash this)."""
        data = self.to_dict()
        if not self.do_sample:  # greedy: sampling knobs cannot change the output, so they do not split the cache
            for name in ("temperature", "top_p", "top_k", "seed"):
                data[name] = None
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def with_max_new_tokens(self, max_new_tokens: int) -> DecodingParams:
        """A copy with another ``max_new_tokens``."""
        return replace(self, max_new_tokens=max_new_tokens)


# X-Instruction's released decoding settings, for instruction generation (stage 3).
RELEASED_DECODING = DecodingParams()


def greedy(max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, stop: tuple[str, ...] = ()) -> DecodingParams:
    """Greedy decoding (deterministic), with repeats allowed: for judging and deterministic tests."""
    return DecodingParams(
        do_sample=False, no_repeat_ngram_size=None, max_new_tokens=max_new_tokens, seed=None, stop=stop
    )
