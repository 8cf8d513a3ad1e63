"""The in-process backend: a Hugging Face ``transformers`` causal LM on CPU or one GPU.

* Batched generation with LEFT padding (a decoder continues from the last position, so padding must come
  first), prompts sorted by length so that a batch holds prompts of similar length (little padding), outputs
  returned in input order.
* bfloat16 on a GPU that supports it (float16 otherwise), float32 on CPU (CPU bfloat16 matmuls are slow and
  lossy on most CPUs).
* Decoding is exactly :class:`DecodingParams`: a fresh ``GenerationConfig`` is built for every call, so
  defaults shipped in a checkpoint's ``generation_config.json`` (a repetition penalty, say) do not leak in.
  Sampling is seeded once per :meth:`TransformersBackend.generate` call: the same prompts, order and batch size
  give the same texts. ``max_new_tokens`` bounds every output (finish reason "length").
* :meth:`TransformersBackend.choice_logprobs` is one forward pass per batch that reads the log-softmax of the
  last position (see :func:`~xinst_assets.inference.base.choice_token_variants` for how choice tokens are
  picked). Position ids are derived from the attention mask so a left-padded row scores exactly like the same
  prompt alone.
* A CUDA out-of-memory error halves the batch and retries it (down to one prompt).
* With ``chat=True`` every prompt is laid out by the model's chat template as one user turn (see
  :mod:`~xinst_assets.inference.chat`); the template adds the special tokens it wants, so none are added.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from xinst_assets.core.prompts import DecodingParams
from xinst_assets.inference.base import (
    Generation,
    InferenceError,
    ModelSpec,
    check_prompts,
    choice_variant_table,
    normalise_choice_logprobs,
    truncate_at_stop,
)
from xinst_assets.inference.chat import chat_prompt

_log = logging.getLogger("xinst.inference")

# Prompts per forward pass. 16 fills a GPU well for 7-8B models with prompts of ~1-2k tokens in bf16 (the KV
# cache of 16 x 2k tokens is ~16 GB for Llama-2-7B); on CPU, larger batches gain little. Tune per model.
DEFAULT_BATCH_SIZE = 16
# How much of a prompt's end decides how the choice tokens are spelled (enough for "...:\n" style endings).
_CHOICE_CONTEXT_CHARS = 16


class TransformersBackend:
    """A causal LM loaded with ``transformers`` (see the module docstring for the behaviour).

    ``batch_size`` bounds prompts per forward pass; ``max_batch_tokens`` (``None``: off) additionally bounds the
    padded size of a batch (prompt + new tokens, times rows), which keeps long-prompt batches within memory.
    ``num_threads`` (CPU; ``None``: torch's default) sets torch's intra-op threads during each call and restores
    them after: small models run fastest on one thread, and on a busy machine spinning worker threads can make
    a tiny model 20 times slower.
    ``chat`` sends every prompt through the tokenizer's chat template (an error when it has none).
    The model is loaded when the backend is built, after :meth:`ModelSpec.validate`, so a bad path fails before
    any work starts.
    """

    def __init__(
        self,
        spec: ModelSpec,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int | None = None,
        add_special_tokens: bool = True,
        num_threads: int | None = None,
        chat: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be positive or None (off), got {max_batch_tokens}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be positive or None (torch's default), got {num_threads}")
        self.num_threads = num_threads
        spec.validate()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec, self.batch_size, self.max_batch_tokens = spec, batch_size, max_batch_tokens
        # A chat template writes the special tokens it wants (a BOS, role markers): none are added on top.
        self.chat = chat
        self.add_special_tokens = add_special_tokens and not chat
        self.device = _resolve_device(spec.device)
        self.torch_dtype = _resolve_dtype(spec.dtype, self.device)
        common = {
            "revision": spec.revision,
            "trust_remote_code": spec.trust_remote_code,
            "local_files_only": not spec.allow_download,
        }
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(spec.load_path(), **common)
            # On a GPU the weights load straight onto it (device_map), not through CPU memory first.
            placement = {"device_map": self.device} if self.device.startswith("cuda") else {}
            self.model = AutoModelForCausalLM.from_pretrained(
                spec.load_path(), dtype=self.torch_dtype, **placement, **common
            )
        except Exception as exc:
            raise InferenceError(f"Could not load the model {spec.model!r} with transformers: {exc}") from exc
        self.model.to(self.device).eval()
        if chat and not getattr(self.tokenizer, "chat_template", None):
            raise InferenceError(
                f"chat was asked for, but the tokenizer of {spec.model!r} has no chat template; set the role's "
                "chat: false to send the raw prompt"
            )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            if self.tokenizer.eos_token_id is None:
                raise InferenceError(f"The tokenizer of {spec.model!r} has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token  # pads are masked out: any id works
        self.pad_id: int = int(self.tokenizer.pad_token_id)
        self.eos_ids: tuple[int, ...] = _eos_ids(self.model, self.tokenizer)
        self.max_positions: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self._fingerprint: str | None = None
        self._variants: dict[tuple[str, tuple[str, ...]], dict[str, tuple[int, ...]]] = {}
        self._torch = torch

    # --- protocol --------------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """``transformers:<model fingerprint>:<dtype>`` (precision changes outputs, so it splits the cache)."""
        if self._fingerprint is None:
            dtype = str(self.torch_dtype).removeprefix("torch.")
            special = ":chat" if self.chat else "" if self.add_special_tokens else ":nospecial"
            self._fingerprint = f"transformers:{self.spec.fingerprint()}:{dtype}{special}"
        return self._fingerprint

    def generate(self, prompts: list[str], params: DecodingParams) -> list[Generation]:
        """Generate one continuation per prompt, in input order."""
        prompts = self._formatted(check_prompts(prompts))
        if not prompts:
            return []
        with self._threads():
            return self._generate(prompts, params)

    def _generate(self, prompts: list[str], params: DecodingParams) -> list[Generation]:
        encoded = self._encode(prompts, params.max_new_tokens)
        if params.do_sample and params.seed is not None:
            self._torch.manual_seed(params.seed)
        config = self._generation_config(params)
        results: list[Generation | None] = [None] * len(prompts)
        for batch in self._batches([len(ids) for ids in encoded], params.max_new_tokens):
            for index, generation in zip(batch, self._generate_batch([encoded[i] for i in batch], config, params)):
                results[index] = generation
        return [r for r in results if r is not None]

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float]]:
        """Per prompt, the next-token probabilities of ``choices`` renormalised over them (they sum to 1)."""
        prompts = self._formatted(check_prompts(prompts))
        if not prompts:
            return []
        with self._threads():
            return self._choice_logprobs(prompts, choices)

    def _choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float]]:
        encoded = self._encode(prompts, 0)
        out: list[dict[str, float] | None] = [None] * len(prompts)
        for batch in self._batches([len(ids) for ids in encoded], 0):
            logprobs = self._last_logprobs([encoded[i] for i in batch])
            for row, index in enumerate(batch):
                variants = self._choice_variants(prompts[index], choices)
                wanted = {t for ids in variants.values() for t in ids}
                values = {t: float(logprobs[row, t]) for t in wanted}
                dist, _ = normalise_choice_logprobs(values, variants)
                out[index] = dist
        return [d if d is not None else {} for d in out]

    def close(self) -> None:
        """Drop the model and free GPU memory."""
        self.model = None
        gc.collect()
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    def _formatted(self, prompts: list[str]) -> list[str]:
        """The prompts as the model sees them: through the chat template in chat mode."""
        return [chat_prompt(self.tokenizer, p) for p in prompts] if self.chat else prompts

    # --- extras (not in the protocol): used by the test server and by evaluation ------------------------------
    # They take prompts as the model sees them (already laid out by a chat template when one is wanted).

    def top_logprobs(self, prompts: list[str], k: int) -> list[list[tuple[int, str, float]]]:
        """Per prompt, the ``k`` most likely next tokens as (id, text, log-probability), best first."""
        prompts = check_prompts(prompts)
        encoded = self._encode(prompts, 0)
        out: list[list[tuple[int, str, float]]] = [[] for _ in prompts]
        for batch in self._batches([len(ids) for ids in encoded], 0):
            with self._threads():
                logprobs = self._last_logprobs([encoded[i] for i in batch])
            values, ids = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)
            for row, index in enumerate(batch):
                out[index] = [
                    (int(t), self.tokenizer.decode([int(t)]), float(v)) for t, v in zip(ids[row], values[row])
                ]
        return out

    def token_logprobs(self, text: str) -> list[tuple[int, str, int, float | None]]:
        """Each token of ``text`` as (id, text, character offset, log-probability given the tokens before it);
        the first token has no log-probability (``None``). Special tokens added by the tokenizer are included."""
        enc = self.tokenizer(text, add_special_tokens=self.add_special_tokens, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        torch = self._torch
        with torch.inference_mode(), self._threads():
            logits = self.model(torch.tensor([ids], device=self.device)).logits[0].float()
        logprobs = logits.log_softmax(-1)
        result: list[tuple[int, str, int, float | None]] = []
        for pos, token_id in enumerate(ids):
            lp = None if pos == 0 else float(logprobs[pos - 1, token_id])
            result.append((int(token_id), self.tokenizer.decode([token_id]), int(offsets[pos][0]), lp))
        return result

    def sequence_logprobs(self, prompts: list[str], continuations: list[str]) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens after its prompt (multiple-choice evaluation).

        The prompt and the continuation are tokenized separately and joined, so the continuation's tokens are the
        same whatever the prompt ends with (as lm-eval-harness does for loglikelihood requests).
        """
        prompts = check_prompts(prompts)
        continuations = check_prompts(continuations)
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        torch = self._torch
        heads = self._encode(prompts, 0)
        tails = [self.tokenizer.encode(c, add_special_tokens=False) for c in continuations]
        if any(not t for t in tails):
            raise ValueError("every continuation must have at least one token")
        joined = [h + t for h, t in zip(heads, tails)]
        out = [0.0] * len(prompts)
        for batch in self._batches([len(ids) for ids in joined], 0):
            input_ids, mask = self._pad([joined[i] for i in batch])
            with torch.inference_mode(), self._threads():
                logits = self.model(
                    input_ids=input_ids, attention_mask=mask, position_ids=_position_ids(mask)
                ).logits.float()
            logprobs = logits.log_softmax(-1)
            width = input_ids.shape[1]
            for row, index in enumerate(batch):
                n = len(tails[index])
                positions = torch.arange(width - n - 1, width - 1, device=logits.device)
                targets = input_ids[row, width - n :]
                out[index] = float(logprobs[row, positions, targets].sum())
        return out

    # --- internals -------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """Run with ``num_threads`` torch threads (when set), restoring the previous count after."""
        if self.num_threads is None:
            yield
            return
        previous = self._torch.get_num_threads()
        self._torch.set_num_threads(self.num_threads)
        try:
            yield
        finally:
            self._torch.set_num_threads(previous)

    def _encode(self, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
        encoded = self.tokenizer(list(prompts), add_special_tokens=self.add_special_tokens)["input_ids"]
        if self.max_positions:
            limit = self.max_positions - max_new_tokens
            for i, ids in enumerate(encoded):
                if len(ids) > limit:
                    raise InferenceError(
                        f"prompt #{i} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} it exceeds the "
                        f"model's context of {self.max_positions} tokens. Bound the text length before this "
                        "stage or lower max_new_tokens."
                    )
        return encoded

    def _batches(self, lengths: Sequence[int], new_tokens: int) -> Iterator[list[int]]:
        """Indices grouped into batches, longest prompts first (an out-of-memory error shows up at once)."""
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        batch: list[int] = []
        for index in order:
            if batch:
                width = lengths[batch[0]] + new_tokens  # the first is the longest: sorted descending
                too_many_tokens = self.max_batch_tokens is not None and width * (len(batch) + 1) > self.max_batch_tokens
                if len(batch) >= self.batch_size or too_many_tokens:
                    yield batch
                    batch = []
            batch.append(index)
        if batch:
            yield batch

    def _pad(self, rows: Sequence[list[int]]) -> tuple[Any, Any]:
        torch = self._torch
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):
            if ids:
                input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                mask[i, width - len(ids) :] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def _last_logprobs(self, rows: Sequence[list[int]]) -> Any:
        """Log-softmax (float32) of the next-token logits after each row; rows are left-padded together."""
        torch = self._torch
        input_ids, mask = self._pad(rows)
        with torch.inference_mode():
            kwargs = {"input_ids": input_ids, "attention_mask": mask, "position_ids": _position_ids(mask)}
            try:
                logits = self.model(**kwargs, logits_to_keep=1).logits  # only the last position's logits
            except TypeError:  # architectures without logits_to_keep
                logits = self.model(**kwargs).logits
        return logits[:, -1, :].float().log_softmax(-1).cpu()

    def _choice_variants(self, prompt: str, choices: Sequence[str]) -> dict[str, tuple[int, ...]]:
        context = prompt[-_CHOICE_CONTEXT_CHARS:]
        key = (context, tuple(choices))
        if key not in self._variants:
            self._variants[key] = choice_variant_table(self.tokenizer, list(choices), context)
        return self._variants[key]

    def _generation_config(self, params: DecodingParams) -> Any:
        from transformers import GenerationConfig

        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": params.do_sample,
            "pad_token_id": self.pad_id,
            "eos_token_id": list(self.eos_ids),
            "no_repeat_ngram_size": params.no_repeat_ngram_size or 0,  # 0 = off in transformers
        }
        if params.do_sample:  # under greedy decoding the sampling knobs stay unset (transformers warns otherwise)
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or 0)
        return GenerationConfig(**kwargs)

    def _generate_batch(self, rows: list[list[int]], config: Any, params: DecodingParams) -> list[Generation]:
        torch = self._torch
        try:
            input_ids, mask = self._pad(rows)
            with torch.inference_mode():
                extra = {}
                if params.stop:
                    extra["stopping_criteria"] = _stop_criteria(self.tokenizer, input_ids.shape[1], params.stop)
                output = self.model.generate(
                    input_ids=input_ids, attention_mask=mask, generation_config=config, **extra
                )
        except torch.cuda.OutOfMemoryError:
            if len(rows) == 1:
                raise InferenceError(
                    f"out of GPU memory generating for one prompt of {len(rows[0])} tokens; shorten the prompts, "
                    "lower max_new_tokens or use a larger GPU"
                ) from None
            torch.cuda.empty_cache()
            half = len(rows) // 2
            _log.warning("out of GPU memory with a batch of %d prompts; retrying as %d + %d", len(rows), half,
                         len(rows) - half)
            return self._generate_batch(rows[:half], config, params) + self._generate_batch(rows[half:], config, params)
        width = input_ids.shape[1]
        return [self._to_generation(output[i, width:].tolist(), len(rows[i]), params) for i in range(len(rows))]

    def _to_generation(self, new_ids: list[int], prompt_tokens: int, params: DecodingParams) -> Generation:
        eos_at = next((j for j, t in enumerate(new_ids) if t in self.eos_ids), None)
        if eos_at is not None:
            text_ids, completion_tokens, finish = new_ids[:eos_at], eos_at + 1, "stop"
        else:
            text_ids = new_ids
            while text_ids and text_ids[-1] == self.pad_id:  # rows that finished on a stop string are padded
                text_ids = text_ids[:-1]
            completion_tokens = len(text_ids)
            finish = "length" if completion_tokens >= params.max_new_tokens else "stop"
        text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
        text, stopped = truncate_at_stop(text, params.stop)
        if stopped:
            finish = "stop"
        return Generation(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                          completion_tokens=completion_tokens)

    def __repr__(self) -> str:
        return f"TransformersBackend({self.spec.model!r}, device={self.device!r}, dtype={self.torch_dtype})"


def _stop_criteria(tokenizer: Any, prompt_width: int, stop: Sequence[str]) -> Any:
    """A stopping criterion that ends a row once its GENERATED text contains a stop string.

    transformers' own ``stop_strings`` also match across the prompt boundary (a prompt ending in "n" plus a
    generated "a" stops on "na"); vLLM and OpenAI servers match in the generated text only, and so does this.
    Only the last few tokens are decoded at each step: a stop string of L characters spans at most 4L tokens
    (a byte-level tokenizer may spend one token per byte, and a UTF-8 character has up to 4 bytes).
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    tail = 4 * max(len(s) for s in stop) + 2

    class GeneratedTextStop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            generated = input_ids[:, prompt_width:]
            window = generated[:, -tail:].tolist()
            texts = tokenizer.batch_decode(window, skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stop) for t in texts], device=input_ids.device)

    return StoppingCriteriaList([GeneratedTextStop()])


def _position_ids(mask: Any) -> Any:
    """Positions counted over real tokens only (0 at each row's first token), as ``generate`` does."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InferenceError(f"device {device!r} was asked for, but torch sees no CUDA GPU here; use 'cpu' or 'auto'")
    return device


def _resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _eos_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.append(configured)
    elif configured:
        ids.extend(int(t) for t in configured)
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    if not ids:
        raise InferenceError("the model has no end-of-sequence token: generation could only stop at max_new_tokens")
    return tuple(dict.fromkeys(ids))
