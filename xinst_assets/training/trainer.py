"""The training entry point: ``train(config)`` builds the data, runs a transformers ``Trainer``, saves the result.

Why the plain ``Trainer`` and not trl's ``SFTTrainer``: the loss masking and packing here are a few dozen
lines that tests pin down exactly (labels -100 on prompt tokens, no attention or prediction across packed
examples), AFP needs a custom ``compute_loss`` with a second forward pass anyway, and it saves one dependency
whose data-handling defaults change between releases.

What a run leaves in ``output_dir``:
``checkpoint-N/`` (resumable: model, optimizer, scheduler, RNG and data position), and at the end a Hugging Face
folder (``model.safetensors``, ``config.json``, tokenizer files, ``training_args.bin``) plus
``xinst_training.json``: the data lineage (files, SHA-256, row counts, drops by reason), base model, config,
loss curve [(step, loss)], throughput and versions. With LoRA the folder holds the merged model and
``adapter/`` keeps the adapter.

Rerunning the same config after a crash resumes from the last ``checkpoint-N``. The function is safe under
``torchrun`` / ``accelerate launch``: every rank builds the same data (deterministic under the seed), only rank 0
logs progress, merges adapters and writes the lineage file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xinst_assets.core.portable_checkpoint import make_portable
from xinst_assets.training.config import AfpOptions, TrainConfig
from xinst_assets.training.data import (
    IGNORE_INDEX,
    PackedCollator,
    PackedDataset,
    PadCollator,
    TextExample,
    afp_cross_lingual_example,
    as_chat,
    file_fingerprint,
    instruction_example,
    read_rows,
    tokenize_examples,
)

LINEAGE_FILE = "xinst_training.json"
RUN_CONFIG_FILE = "xinst_run_config.json"
ADAPTER_DIR = "adapter"

_log = logging.getLogger("xinst.training")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes:d}m{secs:02d}s"


# --- Data ---------------------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    """The training dataset, its collator and what the lineage file records about the inputs."""

    dataset: Any
    collator: Any
    files: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    num_tokens: int = 0


class AfpDataset:
    """Each item: one LM item (an example or a packed block) and one translation pair for the contrastive loss.

    Pairs are visited in a seeded shuffled order, cycling when there are fewer pairs than LM items.
    """

    def __init__(self, lm: Any, pairs: Sequence[tuple[list[int], list[int]]], seed: int) -> None:
        if len(pairs) < 2:
            raise ValueError("AFP needs at least 2 translation pairs (in-batch negatives)")
        self.lm, self.pairs = lm, list(pairs)
        self.order = list(range(len(pairs)))
        random.Random(f"afp:{seed}").shuffle(self.order)

    def __len__(self) -> int:
        return len(self.lm)

    @property
    def num_tokens(self) -> int:
        return self.lm.num_tokens

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"lm": self.lm[index], "pair": self.pairs[self.order[index % len(self.pairs)]]}


class AfpCollator:
    """Collates the LM part with ``inner`` and the pairs as 2n right-padded rows (n sent0 rows, then n sent1)."""

    def __init__(self, inner: Any, pad_token_id: int) -> None:
        self.inner, self.pad_token_id = inner, pad_token_id

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.inner([f["lm"] for f in features])
        rows = [f["pair"][0] for f in features] + [f["pair"][1] for f in features]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, row in enumerate(rows):
            ids[k, : len(row)] = torch.as_tensor(row, dtype=torch.long)
            mask[k, : len(row)] = 1
        batch["pair_input_ids"], batch["pair_attention_mask"] = ids, mask
        return batch


def _file_record(path: str, rows: int, kept: int, dropped: Counter, role: str) -> dict[str, Any]:
    return {
        "role": role,
        "path": str(Path(path).resolve()),
        "sha256": file_fingerprint(path),
        "rows": rows,
        "examples": kept,
        "dropped": dict(dropped),
    }


def _instruction_rows(config: TrainConfig, files: Sequence[Any], task: str, role: str, afp_copy: bool):
    """Format every row of ``files`` for ``task``; return (examples, file records)."""
    examples: list[TextExample] = []
    records = []
    for file in files:
        rows, kept, dropped = 0, 0, Counter()
        for line, row in read_rows(file, config.max_rows):
            rows += 1
            where = f"{file.path}:{line}"
            example, reason = instruction_example(row, task, file, where)
            if example is None:
                dropped[reason] += 1
                continue
            examples.append(example)
            kept += 1
            if afp_copy:
                extra = afp_cross_lingual_example(row, file, where)
                if extra is not None:
                    examples.append(extra)
                    kept += 1
        records.append(_file_record(file.path, rows, kept, dropped, role))
    return examples, records


def uses_chat(config: TrainConfig, tokenizer: Any) -> bool:
    """Whether the run lays its prompts out with the chat template (see ``TrainConfig.chat``)."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if config.chat is None:
        return config.task == "curator" and has_template
    if config.chat and not has_template:
        raise ValueError("chat is true but the base model's tokenizer has no chat template")
    return config.chat


def prepare_data(config: TrainConfig, tokenizer: Any, flatten_packed: bool = False) -> PreparedData:
    """Read, format, tokenize (and pack) the training data of ``config``."""
    afp, ia = config.afp, config.instructalign
    examples, files = _instruction_rows(
        config, config.data_files, config.task, "instructions", afp.enabled and afp.cross_lingual_instructions
    )
    stats: Counter = Counter()
    if ia.enabled:
        from xinst_assets.training.instructalign import (
            alignment_examples,
            count_objectives,
            interleave_replay,
            read_pairs,
        )

        pairs = []
        for file in ia.parallel_files:
            file_pairs, skipped = read_pairs(file, config.max_rows)
            pairs += file_pairs
            files.append(
                _file_record(
                    file.path,
                    len(file_pairs) + skipped,
                    len(file_pairs),
                    Counter({"empty_pair": skipped} if skipped else {}),
                    "instructalign_pairs",
                )
            )
        aligned = alignment_examples(
            pairs, config.seed, ia.objective_weights, ia.infill_prob, ia.deletion_prob
        )
        replay, replay_files = _instruction_rows(config, ia.replay_files, "sft", "replay", False)
        files += replay_files
        mixed = (
            interleave_replay(aligned, replay, ia.replay_ratio, config.seed) if ia.replay_ratio else aligned
        )
        stats.update({f"instructalign_{k}": v for k, v in count_objectives(mixed).items()})
        examples += mixed
    if not examples:
        raise ValueError("no training examples: every row was empty or dropped (see the file records)")
    if uses_chat(config, tokenizer):
        examples = [as_chat(tokenizer, e) for e in examples]
        stats["chat_template"] = len(examples)
    dataset, token_stats = tokenize_examples(tokenizer, examples, config.max_length)
    stats.update(token_stats)
    if len(dataset) == 0:
        raise ValueError(f"every example was dropped while tokenizing: {dict(token_stats)}")
    pad_id = tokenizer.pad_token_id
    lm_dataset: Any = dataset
    collator: Any = PadCollator(pad_id)
    if config.packing:
        lm_dataset = PackedDataset(dataset, config.max_length)
        collator = PackedCollator(pad_id, flatten=flatten_packed)
        stats["packed_blocks"] = len(lm_dataset)
    if afp.enabled:
        pairs_ids = []
        for file in afp.parallel_files:
            from xinst_assets.training.instructalign import read_pairs

            file_pairs, skipped = read_pairs(file, config.max_rows)
            for pair in file_pairs:
                ids0 = tokenizer(
                    pair.en, add_special_tokens=True, truncation=True, max_length=afp.max_pair_tokens
                )
                ids1 = tokenizer(
                    pair.text, add_special_tokens=True, truncation=True, max_length=afp.max_pair_tokens
                )
                pairs_ids.append((ids0["input_ids"], ids1["input_ids"]))
            files.append(
                _file_record(
                    file.path,
                    len(file_pairs) + skipped,
                    len(file_pairs),
                    Counter({"empty_pair": skipped} if skipped else {}),
                    "afp_pairs",
                )
            )
        lm_dataset = AfpDataset(lm_dataset, pairs_ids, config.seed)
        collator = AfpCollator(collator, pad_id)
        stats["afp_pairs"] = len(pairs_ids)
    return PreparedData(lm_dataset, collator, files, dict(stats), dataset.num_tokens)


# --- Trainer ------------------------------------------------------------------------------------------------


def _make_trainer_class():
    """Build the Trainer subclass lazily (keeps ``import xinst_assets.training`` free of torch)."""
    from transformers import Trainer

    from xinst_assets.training.objectives import contrastive_loss

    class XinstTrainer(Trainer):
        """``Trainer`` with the AFP loss, token counting and loss components in the logs."""

        # compute_loss below returns a loss already scaled for gradient accumulation.
        loss_is_scaled_for_ga = True

        def __init__(self, *args: Any, afp: AfpOptions | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.afp = afp if afp is not None and afp.enabled else None
            self.tokens_seen = 0  # real (non-padding) tokens this process trained on, this session
            self.recent_loss: Any = None
            self._components: dict[str, float] = {}
            self._component_batches = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            self.tokens_seen += int(inputs.pop("real_tokens", 0))
            pair_ids = inputs.pop("pair_input_ids", None)
            pair_mask = inputs.pop("pair_attention_mask", None)
            extra = {"num_items_in_batch": num_items_in_batch} if num_items_in_batch is not None else {}
            outputs = model(**inputs, use_cache=False, **extra)
            lm_loss = outputs.loss
            local_mean = lm_loss.detach()  # this micro-batch's mean token loss, for progress lines
            if num_items_in_batch is None:
                lm_loss = lm_loss / self.current_gradient_accumulation_steps
            else:
                # The model divided the summed token loss by num_items_in_batch, the label count of the whole
                # accumulation window (of every process when average_tokens_across_devices).
                local_items = (inputs["labels"][..., 1:] != IGNORE_INDEX).sum().clamp(min=1)
                local_mean = local_mean * num_items_in_batch / local_items
                if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                    lm_loss = (
                        lm_loss * self.accelerator.num_processes
                    )  # DDP averages gradients over processes
            loss = lm_loss
            display = local_mean
            if self.afp is not None and pair_ids is not None:
                c_loss = contrastive_loss(
                    model, pair_ids, pair_mask, self.afp.layer, self.afp.temperature, self.afp.symmetric
                )
                loss = (
                    self.afp.weight_contrastive * c_loss / self.current_gradient_accumulation_steps
                    + self.afp.weight_lm * lm_loss
                )
                display = self.afp.weight_contrastive * c_loss.detach() + self.afp.weight_lm * local_mean
                self._add_component("contrastive_loss", c_loss / self.current_gradient_accumulation_steps)
                self._add_component("lm_loss", lm_loss)
            self.recent_loss = display
            return (loss, outputs) if return_outputs else loss

        def _add_component(self, name: str, value: Any) -> None:
            self._components[name] = self._components.get(name, 0.0) + float(value.detach())
            if name == "lm_loss":
                self._component_batches += 1

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs and self._components:
                # Summed over micro-batches scaled by 1/GA, like "loss": per optimizer step on average.
                steps = max(self._component_batches / self.args.gradient_accumulation_steps, 1e-9)
                for name, total in self._components.items():
                    logs[name] = round(total / steps, 6)
                self._components, self._component_batches = {}, 0
            super().log(logs, start_time)

    return XinstTrainer


def _make_progress_callback(every_s: float, emit: Callable[[str], None], trainer_ref: list):
    from transformers import TrainerCallback

    class ProgressReporter(TrainerCallback):
        """Logs step, loss, tokens/s and time left at least every ``every_s`` seconds (rank 0 only)."""

        def __init__(self) -> None:
            self.start = self.last = 0.0
            self.step0 = 0
            self.world = 1

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = self.last = time.monotonic()
            self.step0 = state.global_step
            self.world = args.world_size
            if state.is_world_process_zero:
                emit(f"[train] starting at step {state.global_step} of {state.max_steps}")

        def line(self, state) -> str:
            trainer = trainer_ref[0]
            elapsed = max(time.monotonic() - self.start, 1e-9)
            done = state.global_step - self.step0
            rate = done / elapsed
            left = (state.max_steps - state.global_step) / rate if rate > 0 else float("nan")
            tokens = trainer.tokens_seen * self.world / elapsed
            loss = float(trainer.recent_loss) if trainer.recent_loss is not None else float("nan")
            pct = 100.0 * state.global_step / max(state.max_steps, 1)
            eta = "?" if math.isnan(left) else _format_seconds(left)
            return (
                f"[train] step {state.global_step}/{state.max_steps} ({pct:.1f}%), loss {loss:.4f}, "
                f"{tokens:,.0f} tokens/s, {eta} left"
            )

        def on_step_end(self, args, state, control, **kwargs):
            now = time.monotonic()
            if state.is_world_process_zero and now - self.last >= every_s:
                self.last = now
                emit(self.line(state))

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                emit(self.line(state) + " (done)")

    return ProgressReporter()


def _planned_steps(trainer: Any) -> int | None:
    """The number of optimizer steps the Trainer will run in total (None if it cannot be worked out)."""
    try:
        return int(trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())[-1])
    except (
        AttributeError,
        TypeError,
        ValueError,
        IndexError,
    ):  # another transformers API: let Trainer decide
        return None


@dataclass(frozen=True)
class TrainResult:
    """What a finished run reports (also in the lineage file)."""

    output_dir: str
    global_step: int
    steps_this_run: int
    final_loss: float | None
    tokens_per_s: float
    train_runtime_s: float
    resumed_from: str | None
    lineage_path: str
    adapter_dir: str | None
    loss_curve: tuple[tuple[int, float], ...]

    def metadata(self) -> dict[str, Any]:
        """Flat values for Dagster metadata."""
        return {
            "output_dir": self.output_dir,
            "global_step": self.global_step,
            "steps_this_run": self.steps_this_run,
            "final_loss": self.final_loss,
            "tokens_per_s": round(self.tokens_per_s, 1),
            "train_runtime_s": round(self.train_runtime_s, 1),
            "resumed_from": self.resumed_from,
        }


def _use_bf16(config: TrainConfig) -> bool:
    import torch

    if config.bf16 is not None:
        return config.bf16
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _load_model(config: TrainConfig, bf16: bool):
    import torch
    from transformers import AutoModelForCausalLM

    # Full fine-tuning keeps float32 master weights (bf16 autocast computes): at lr 1e-5 an update is below
    # bf16's resolution for most weights. A frozen LoRA base can stay in bf16.
    dtype = torch.bfloat16 if (bf16 and config.lora.enabled) else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": config.trust_remote_code}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(config.base_model, **kwargs)
    except OSError as exc:
        raise OSError(f"cannot load base model {config.base_model!r}: {exc}") from exc
    model.config.use_cache = False  # a cache would also disable packed-sequence masking
    return model


def _apply_lora(model: Any, config: TrainConfig):
    from peft import LoraConfig, get_peft_model

    lora = config.lora
    target = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    peft_config = LoraConfig(
        task_type="CAUSAL_LM",
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=target,
    )
    return get_peft_model(model, peft_config)


def _training_arguments(config: TrainConfig, bf16: bool):
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=config.output_dir,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.effective_learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        activation_checkpointing=config.gradient_checkpointing,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without a GPU, several processes (torchrun / accelerate launch) need accelerate's CPU mode (gloo).
        use_cpu=not torch.cuda.is_available() and _world_size() > 1,
        ddp_find_unused_parameters=False,  # every trainable weight takes part in each forward pass
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        logging_first_step=True,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_drop_last=config.afp.enabled,  # a batch of one pair has no in-batch negative
        deepspeed=config.deepspeed,
    )


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "accelerate", "peft"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _base_model_record(base: str) -> dict[str, Any]:
    record: dict[str, Any] = {"id": base}
    config_file = Path(base) / "config.json"
    if config_file.is_file():
        record["path"] = str(Path(base).resolve())
        record["config_sha256"] = file_fingerprint(config_file)
    return record


def _merge_lora(config: TrainConfig, adapter_dir: Path, out_dir: Path, bf16: bool, tokenizer: Any) -> None:
    """Load the base model afresh, merge the saved adapter into it and save the merged model (rank 0)."""
    from peft import PeftModel

    base = _load_model(config, bf16)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    args_file = adapter_dir / "training_args.bin"
    if args_file.is_file():
        shutil.copy2(args_file, out_dir / "training_args.bin")


def _finished_result(out_dir: Path, config: TrainConfig) -> TrainResult | None:
    """The recorded result when ``out_dir`` holds a finished run of exactly this config, else None."""
    lineage_file = out_dir / LINEAGE_FILE
    if not lineage_file.is_file() or not any(out_dir.glob("*.safetensors")):
        return None
    try:
        lineage = json.loads(lineage_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    if lineage.get("config") != config.to_dict():
        return None
    adapter = out_dir / ADAPTER_DIR
    return TrainResult(
        output_dir=str(out_dir.resolve()),
        global_step=int(lineage["global_step"]),
        steps_this_run=0,
        final_loss=lineage.get("final_loss"),
        tokens_per_s=0.0,
        train_runtime_s=0.0,
        resumed_from=None,
        lineage_path=str(lineage_file.resolve()),
        adapter_dir=str(adapter.resolve()) if config.lora.enabled else None,
        loss_curve=tuple((int(step), float(loss)) for step, loss in lineage.get("loss_curve", [])),
    )


def finished_result(out_dir: str | Path, config: TrainConfig) -> TrainResult | None:
    """The result of a finished run of exactly ``config`` in ``out_dir``, or None (cheap: reads one file)."""
    return _finished_result(Path(out_dir), config)


def _check_previous_config(out_dir: Path, config: TrainConfig, emit: Callable[[str], None]) -> None:
    previous = out_dir / RUN_CONFIG_FILE
    if previous.is_file():
        try:
            old = json.loads(previous.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = None
        if old != config.to_dict():
            emit(
                f"[train] warning: {out_dir} holds a run with a different config; resuming its checkpoints anyway"
            )


def train(
    config: TrainConfig,
    log: Callable[[str], None] | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Run one training job described by ``config``; return its result (see the module docstring).

    ``log`` receives progress lines (rank 0), e.g. ``pipes.log.info``; ``callbacks`` are extra
    ``transformers.TrainerCallback`` objects.
    """
    import torch
    from transformers import AutoTokenizer, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    started = datetime.now(UTC).isoformat(timespec="seconds")
    is_main = _rank() == 0

    def emit(line: str) -> None:
        if is_main:
            _log.info(line)
            if log is not None:
                log(line)

    out_dir = Path(config.output_dir)
    finished = _finished_result(out_dir, config) if config.resume else None
    if finished is not None:
        emit(
            f"[train] {out_dir} already holds this run, finished at step {finished.global_step}; nothing to do"
        )
        return finished
    set_seed(config.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            config.base_model, trust_remote_code=config.trust_remote_code
        )
    except OSError as exc:
        raise OSError(f"cannot load the tokenizer of {config.base_model!r}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding only: labels are built by position, never by id
    bf16 = _use_bf16(config)
    # TrainingArguments first: it sets up the distributed state, which from_pretrained reads (DeepSpeed ZeRO-3
    # initialisation, FSDP's low-memory loading).
    args = _training_arguments(config, bf16)
    _ = args.device
    model = _load_model(config, bf16)
    flatten = "flash" in str(getattr(model.config, "_attn_implementation", "") or "")
    data = prepare_data(config, tokenizer, flatten_packed=flatten)
    emit(
        f"[train] {len(data.dataset):,} training items ({data.num_tokens:,} tokens) from "
        f"{len(data.files)} files; {data.stats}"
    )
    if config.lora.enabled:
        model = _apply_lora(model, config)

    last = None
    if config.resume and out_dir.is_dir():
        last = get_last_checkpoint(str(out_dir))
        if last:
            _check_previous_config(out_dir, config, emit)
            emit(f"[train] resuming from {last}")
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / RUN_CONFIG_FILE).write_text(
            json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8"
        )

    trainer_ref: list = []
    trainer = _make_trainer_class()(
        model=model,
        args=args,
        train_dataset=data.dataset,
        data_collator=data.collator,
        processing_class=tokenizer,
        afp=config.afp,
        callbacks=[_make_progress_callback(config.progress_every_s, emit, trainer_ref), *callbacks],
    )
    trainer_ref.append(trainer)
    step_before = 0
    if last:
        state_file = Path(last) / "trainer_state.json"
        step_before = json.loads(state_file.read_text(encoding="utf-8")).get("global_step", 0)
    planned = _planned_steps(trainer)
    if last and planned is not None and step_before >= planned:
        # The checkpoint is already the last step (the crash came before the final save). Trainer.train would
        # run one more optimizer step here, so load the checkpoint and go straight to saving.
        from transformers.trainer_callback import TrainerState

        emit(f"[train] {last} is the final step ({step_before}); saving it without training further")
        trainer._load_from_checkpoint(last)
        trainer.state = TrainerState.load_from_json(str(Path(last) / "trainer_state.json"))
        runtime = 0.0
    else:
        output = trainer.train(resume_from_checkpoint=last)
        runtime = float(output.metrics.get("train_runtime", 0.0))

    tokens = torch.tensor([trainer.tokens_seen], dtype=torch.long, device=trainer.args.device)
    total_tokens = (
        int(trainer.accelerator.gather(tokens).sum())
        if trainer.accelerator.num_processes > 1
        else int(tokens)
    )

    adapter_dir = None
    if config.lora.enabled:
        adapter_dir = out_dir / ADAPTER_DIR
        trainer.save_model(str(adapter_dir))
        trainer.accelerator.wait_for_everyone()
        if is_main:
            _merge_lora(config, adapter_dir, out_dir, bf16, tokenizer)
    else:
        trainer.save_model(str(out_dir))
        if is_main:
            # Inference-ready config: the cache was off only for training.
            cfg_file = out_dir / "config.json"
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            cfg["use_cache"] = True
            cfg_file.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    if is_main:
        make_portable(out_dir)  # the saved model and tokenizer load with transformers 4.x as well as 5.x

    curve = tuple(
        (int(entry["step"]), float(entry["loss"])) for entry in trainer.state.log_history if "loss" in entry
    )
    result = TrainResult(
        output_dir=str(out_dir.resolve()),
        global_step=int(trainer.state.global_step),
        steps_this_run=int(trainer.state.global_step) - int(step_before),
        final_loss=curve[-1][1] if curve else None,
        tokens_per_s=total_tokens / runtime if runtime > 0 else 0.0,
        train_runtime_s=runtime,
        resumed_from=last,
        lineage_path=str((out_dir / LINEAGE_FILE).resolve()),
        adapter_dir=str(adapter_dir.resolve()) if adapter_dir else None,
        loss_curve=curve,
    )
    if is_main:
        lineage = {
            "task": config.task,
            "base_model": _base_model_record(config.base_model),
            "data_files": data.files,
            "data_stats": data.stats,
            "training_tokens_per_epoch": data.num_tokens,
            "config": config.to_dict(),
            "effective_learning_rate": config.effective_learning_rate,
            "bf16": bf16,
            "world_size": trainer.accelerator.num_processes,
            "started_at": started,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "resumed_from": last,
            "global_step": result.global_step,
            "steps_this_run": result.steps_this_run,
            "final_loss": result.final_loss,
            "tokens_per_s": result.tokens_per_s,
            "train_runtime_s": runtime,
            "loss_curve": [list(point) for point in curve],
            "versions": _versions(),
        }
        (out_dir / LINEAGE_FILE).write_text(
            json.dumps(lineage, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        emit(
            f"[train] saved {out_dir} (step {result.global_step}, final loss {result.final_loss}, "
            f"{result.tokens_per_s:,.0f} tokens/s)"
        )
    trainer.accelerator.wait_for_everyone()
    return result
