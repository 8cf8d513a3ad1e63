"""Training of xinst's two checkpoints (METHOD.md stages 3 and 6), with the AFP and InstructAlign options.

``train(TrainConfig(...))`` in process, or ``python -m xinst_assets.training --config run.json`` as a
subprocess (plain, under ``torchrun`` / ``accelerate launch``, or under Dagster Pipes). Importing this package
does not import torch; the heavy modules load when ``train`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xinst_assets.training.config import (
    AfpOptions,
    DataFile,
    InstructAlignOptions,
    LoraOptions,
    TrainConfig,
)

if TYPE_CHECKING:
    from xinst_assets.training.trainer import TrainResult

__all__ = [
    "AfpOptions",
    "DataFile",
    "InstructAlignOptions",
    "LoraOptions",
    "TrainConfig",
    "TrainResult",
    "train",
]


def train(config: TrainConfig, log: Any = None, callbacks: Any = ()) -> TrainResult:
    """Run one training job (see :func:`xinst_assets.training.trainer.train`)."""
    from xinst_assets.training.trainer import train as _train

    return _train(config, log=log, callbacks=callbacks)


def __getattr__(name: str) -> Any:
    if name == "TrainResult":
        from xinst_assets.training.trainer import TrainResult

        return TrainResult
    raise AttributeError(name)
