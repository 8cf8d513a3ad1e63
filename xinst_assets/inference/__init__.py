"""The inference layer: one contract for generation and constrained-choice scoring, three backends, a cache.

No Dagster import here: stages wrap these objects in a resource. Heavy libraries (torch, transformers, vLLM)
are imported only when a backend is built.

    from xinst_assets.core.prompts import RELEASED_DECODING
    from xinst_assets.inference import ModelSpec, GenerationCache, generate_cached
    from xinst_assets.inference.transformers_backend import TransformersBackend

    backend = TransformersBackend(ModelSpec("path/to/checkpoint"))
    with GenerationCache.from_warehouse(warehouse) as cache:
        outputs, stats = generate_cached(backend, cache, prompts, RELEASED_DECODING, task="instruction_generation")
"""

from xinst_assets.inference.base import (
    BackendUnavailableError,
    FinishReason,
    Generation,
    InferenceBackend,
    InferenceError,
    InferenceHTTPError,
    InferenceTimeout,
    ModelNotFoundError,
    ModelSpec,
    TransientHTTPError,
    TransientInferenceError,
    choice_token_variants,
)
from xinst_assets.inference.cache import (
    CachedBackend,
    CacheStats,
    GenerationCache,
    choice_logprobs_cached,
    generate_cached,
)
from xinst_assets.inference.scoring import (
    GeneratedLabels,
    PairScore,
    label_by_generation,
    parse_label,
    score_pairs,
)

__all__ = [
    "BackendUnavailableError",
    "CacheStats",
    "CachedBackend",
    "FinishReason",
    "GeneratedLabels",
    "Generation",
    "GenerationCache",
    "InferenceBackend",
    "InferenceError",
    "InferenceHTTPError",
    "InferenceTimeout",
    "ModelNotFoundError",
    "ModelSpec",
    "PairScore",
    "TransientHTTPError",
    "TransientInferenceError",
    "choice_logprobs_cached",
    "choice_token_variants",
    "generate_cached",
    "label_by_generation",
    "parse_label",
    "score_pairs",
]
