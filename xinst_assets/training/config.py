"""The settings of one training run, as a JSON-serialisable tree of frozen dataclasses.

One ``TrainConfig`` describes a run of any checkpoint METHOD.md names: the tuned model (``task="sft"``:
instruction -> response, stage 6), the instruction generator (``task="generator"``: response ->
instruction, stage 3) or the curator (``task="curator"``: a pair in the self-curation prompt -> its level
"1"/"2"/"3", stage 4). ``TrainConfig.from_json(path)`` reads the ``run.json`` that
``python -m xinst_assets.training --config run.json`` takes; ``to_dict()`` is what the run records in its
lineage file. Unknown keys are an error (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

TASKS = ("sft", "generator", "curator")
INSTRUCTALIGN_OBJECTIVES = (
    "translation",
    "bilingual_denoising",
    "monolingual_denoising",
    "semantic_similarity",
)

# Learning rates when ``TrainConfig.learning_rate`` is None.
# AFP and InstructAlign both train full-parameter with lr 1e-5 (METHOD.md, stage 6).
FULL_FINETUNE_LR = 1e-5
# LoRA updates few parameters from a zero start and needs a larger step: QLoRA (Dettmers et al. 2023) used 2e-4
# for its 7B and 13B models.
LORA_LR = 2e-4


@dataclass(frozen=True)
class DataFile:
    """One input file (JSONL, JSONL.gz or Parquet) and, optionally, the language of the rows that lack one.

    ``lang`` is a registry code (``"id"``) or ``"en"``; a row's own ``lang_name`` (or ``lang``) wins.
    """

    path: str
    lang: str | None = None


def _data_files(value: Any, where: str) -> tuple[DataFile, ...]:
    if isinstance(value, (str, Mapping)):
        value = [value]
    files = []
    for item in value or ():
        if isinstance(item, str):
            files.append(DataFile(path=item))
        elif isinstance(item, Mapping):
            unknown = set(item) - {"path", "lang"}
            if unknown or "path" not in item:
                raise ValueError(
                    f"{where}: each file is a path or {{'path': ..., 'lang': ...}}, got {dict(item)}"
                )
            files.append(DataFile(path=str(item["path"]), lang=item.get("lang")))
        elif isinstance(item, DataFile):
            files.append(item)
        else:
            raise TypeError(f"{where}: cannot read a file entry from {item!r}")
    return tuple(files)


@dataclass(frozen=True)
class LoraOptions:
    """LoRA adapters (peft) instead of full fine-tuning. The final folder holds the merged model."""

    enabled: bool = False
    r: int = 16  # (xinst) a common rank for 7B-class models; alpha = 2r keeps the update scale at 2
    alpha: int = 32
    dropout: float = 0.05
    # peft's "all-linear" targets every linear layer except the output head, whatever the architecture's names.
    target_modules: tuple[str, ...] | str = "all-linear"

    def __post_init__(self) -> None:
        if not isinstance(self.target_modules, str):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))


@dataclass(frozen=True)
class AfpOptions:
    """AFP (Li et al., NAACL 2024): multilingual contrastive learning on translation pairs + LM loss."""

    enabled: bool = False
    # Rows {en, text} (+ lang_name or the file's lang): sent0 = English, sent1 = the text in language L.
    parallel_files: tuple[DataFile, ...] = ()
    # hidden_states[layer]: 0 = embeddings, 1 = output of the first transformer block (AFP's scripts).
    layer: int = 1
    temperature: float = 0.05  # AFP's value
    weight_contrastive: float = 1.0  # AFP: 1.0 * L_contrastive + 1.5 * L_lm
    weight_lm: float = 1.5
    # False: InfoNCE from sent0 (English) to sent1 only, as SimCSE, whose sent0/sent1 format AFP's scripts
    # use; True: the mean of both directions.
    symmetric: bool = False
    # Also train every instruction row in AFP's cross-lingual format "{instruction} Answer in {lang}: {output}"
    # (in addition to its X-Instruction-format copy). (xinst) choice: X-Instruction rows are already
    # cross-lingual (English instruction, response in L), so they are AFP's cross-lingual instructions.
    cross_lingual_instructions: bool = True
    max_pair_tokens: int = 128  # (xinst) translation pairs are sentences; longer ones are cut

    def __post_init__(self) -> None:
        object.__setattr__(self, "parallel_files", _data_files(self.parallel_files, "afp.parallel_files"))


@dataclass(frozen=True)
class InstructAlignOptions:
    """InstructAlign (Cahyawijaya et al. 2023): alignment objectives on parallel pairs + experience replay."""

    enabled: bool = False
    parallel_files: tuple[DataFile, ...] = ()
    # Relative weight of each objective when one is drawn per pair; equal weights = uniform (the paper's draw).
    objective_weights: Mapping[str, float] = field(
        default_factory=lambda: {name: 1.0 for name in INSTRUCTALIGN_OBJECTIVES}
    )
    infill_prob: float = 0.2  # InstructAlign's word-infilling probability
    deletion_prob: float = 0.2  # InstructAlign's word-deletion probability
    # Replay examples per alignment example: 1.0 is the paper's 1:1 interleaving.
    replay_ratio: float = 1.0
    # Previously learned instruction data (rows {instruction, response, lang_name?}).
    replay_files: tuple[DataFile, ...] = ()

    def __post_init__(self) -> None:
        for name in ("parallel_files", "replay_files"):
            object.__setattr__(self, name, _data_files(getattr(self, name), f"instructalign.{name}"))
        object.__setattr__(
            self, "objective_weights", {str(k): float(v) for k, v in self.objective_weights.items()}
        )


@dataclass(frozen=True)
class TrainConfig:
    """Everything one run needs. ``None`` means "not set" (see each field), never a magic number."""

    base_model: str  # local folder or hub id of a causal LM
    output_dir: str
    task: Literal["sft", "generator", "curator"] = "sft"
    # Rows {instruction, response, lang_name, refined} (curator: {instruction, response, lang_name, label});
    # may be empty when InstructAlign supplies the data.
    data_files: tuple[DataFile, ...] = ()
    lora: LoraOptions = LoraOptions()
    packing: bool = False
    max_length: int = 512  # AFP's maximum length
    learning_rate: float | None = None  # None: 1e-5 full fine-tuning, 2e-4 with LoRA (see constants above)
    lr_scheduler: str = "cosine"  # AFP: cosine
    warmup_ratio: float = 0.03  # AFP: 3% warmup
    num_epochs: float = 3.0  # (xinst) Alpaca's recipe, whose prompt format X-Instruction's models use
    max_steps: int | None = None  # set: overrides num_epochs
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    bf16: bool | None = None  # None: on when a CUDA GPU supports it
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None  # None: the model's default (sdpa)
    save_steps: int = 500
    save_total_limit: int | None = 2  # None keeps every checkpoint
    logging_steps: int = 10
    progress_every_s: float = 30.0  # at most this long between progress lines
    resume: bool = True  # continue from the last checkpoint-N in output_dir
    deepspeed: str | None = None  # path to a DeepSpeed JSON (see launch/deepspeed_zero3.json)
    trust_remote_code: bool = False
    max_rows: int | None = None  # read at most this many rows per data file (smoke runs)
    # Lay each prompt out as one user turn of the tokenizer's chat template, as an instruction-following role
    # (curator, refiner, judge) is asked at inference. None: on for the curator task when the tokenizer has a
    # chat template, off for the generator and the tuned model (they are served the raw prompt).
    chat: bool | None = None
    afp: AfpOptions = AfpOptions()
    instructalign: InstructAlignOptions = InstructAlignOptions()

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_files", _data_files(self.data_files, "data_files"))
        for key, options_cls in _NESTED.items():
            value = getattr(self, key)
            if isinstance(value, Mapping):
                object.__setattr__(self, key, _build(options_cls, value, key))
        problems = []
        if self.task not in TASKS:
            problems.append(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.base_model:
            problems.append("base_model is empty: give a local model folder or a hub id")
        if not self.output_dir:
            problems.append("output_dir is empty")
        if self.max_length < 16:
            problems.append(f"max_length {self.max_length} is too small to hold a prompt and an answer")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio must be within [0, 1), got {self.warmup_ratio}")
        if self.afp.enabled and self.task != "sft":
            problems.append("AFP applies to the tuned model (task 'sft'), not to the instruction generator")
        if self.afp.enabled and self.per_device_batch_size < 2:
            problems.append(
                "AFP needs per_device_batch_size >= 2: the contrastive loss uses in-batch negatives"
            )
        if self.afp.enabled and not self.afp.parallel_files:
            problems.append("afp.enabled needs afp.parallel_files (translation pairs)")
        if self.afp.temperature <= 0:
            problems.append(f"afp.temperature must be > 0, got {self.afp.temperature}")
        if self.afp.layer < 0:
            problems.append(f"afp.layer must be >= 0, got {self.afp.layer}")
        ia = self.instructalign
        if ia.enabled and self.task != "sft":
            problems.append("InstructAlign applies to the tuned model (task 'sft')")
        if ia.enabled and not ia.parallel_files:
            problems.append("instructalign.enabled needs instructalign.parallel_files")
        if ia.enabled and ia.replay_ratio > 0 and not ia.replay_files:
            problems.append(
                "instructalign.replay_ratio > 0 needs instructalign.replay_files (or set it to 0)"
            )
        unknown = set(ia.objective_weights) - set(INSTRUCTALIGN_OBJECTIVES)
        if unknown:
            problems.append(
                f"unknown InstructAlign objectives {sorted(unknown)}; known: {INSTRUCTALIGN_OBJECTIVES}"
            )
        if ia.enabled and not any(w > 0 for w in ia.objective_weights.values()):
            problems.append("instructalign.objective_weights: at least one weight must be > 0")
        for name in ("infill_prob", "deletion_prob"):
            if not 0.0 <= getattr(ia, name) <= 1.0:
                problems.append(f"instructalign.{name} must be within [0, 1]")
        if ia.replay_ratio < 0:
            problems.append("instructalign.replay_ratio must be >= 0")
        if not self.data_files and not ia.enabled:
            problems.append("data_files is empty: name at least one JSONL/Parquet file of training rows")
        if problems:
            raise ValueError("Invalid training config:\n  - " + "\n  - ".join(problems))

    @property
    def effective_learning_rate(self) -> float:
        """The learning rate the run uses (the mode's default when ``learning_rate`` is None)."""
        if self.learning_rate is not None:
            return self.learning_rate
        return LORA_LR if self.lora.enabled else FULL_FINETUNE_LR

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self, path: str | Path) -> Path:
        """Write the config as JSON to ``path`` (a ``run.json`` for the CLI)."""
        out = Path(path)
        out.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build a config from a dict (as read from JSON); unknown keys raise ``ValueError``."""
        return _build(cls, data, "config")

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        """Read a ``run.json``."""
        source = Path(path)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"training config not found: {source}") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source} is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise TypeError(f"{source}: expected a JSON object at the top level")
        return cls.from_dict(data)


_NESTED = {"lora": LoraOptions, "afp": AfpOptions, "instructalign": InstructAlignOptions}
_FILE_LISTS = {"data_files", "parallel_files", "replay_files"}


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise TypeError(f"{where} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known keys: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _NESTED and cls is TrainConfig:
            kwargs[key] = value  # built in TrainConfig.__post_init__
        elif key in _FILE_LISTS:
            kwargs[key] = _data_files(value, f"{where}.{key}")
        elif key == "target_modules" and isinstance(value, list):
            kwargs[key] = tuple(value)
        elif key == "objective_weights":
            kwargs[key] = {str(k): float(v) for k, v in dict(value).items()}
        else:
            kwargs[key] = value
    return cls(**kwargs)
