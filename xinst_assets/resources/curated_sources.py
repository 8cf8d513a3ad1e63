"""Where seed pairs, parallel pairs, evaluation questions and replay instructions come from."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field


class CuratedSources(ConfigurableResource):
    """The embedded sample files plus user files (globs with ``{lang}``) for each curated input."""

    include_embedded: bool = Field(default=True, description="Use the embedded sample files too.")
    seed_pairs: list[str] = Field(default_factory=list, description="Globs of seed-pair JSONL files.")
    parallel_pairs: list[str] = Field(default_factory=list, description="Globs of parallel-pair JSONL files.")
    eval_questions: list[str] = Field(default_factory=list, description="Globs of evaluation-question files.")
    replay_instructions: list[str] = Field(
        default_factory=list, description="Globs of JSONL files of English {instruction, response} rows: the "
        "instruction data the tuned model learned before, replayed by continual InstructAlign.")
