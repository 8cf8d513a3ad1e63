"""Command line: ``python -m xinst_assets.training --config run.json``.

Works as a plain subprocess, under ``torchrun`` / ``accelerate launch`` (every rank runs this; rank 0 reports),
and under Dagster Pipes (``PipesSubprocessClient``): when launched by Pipes, rank 0 streams its progress lines
to the Dagster run log and reports the asset materialization with the final loss, steps, tokens/s and the
output path. Under Pipes the config may also come from the Pipes extra ``train_config`` (a dict) instead of
``--config``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from xinst_assets.training.config import TrainConfig


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m xinst_assets.training", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", help="path to a run.json (a TrainConfig as JSON)")
    parser.add_argument("--asset-key", help="Pipes: the asset key to report when several are in scope")
    args, _unknown = parser.parse_known_args(argv)  # Pipes may pass its own --dagster-pipes-* arguments
    return args


def _pipes_active() -> bool:
    """True in the rank-0 process of a run launched by Dagster Pipes."""
    if int(os.environ.get("RANK", "0")) != 0:
        return False
    try:
        from dagster_pipes import PipesCliArgsParamsLoader, PipesEnvVarParamsLoader
    except ImportError:
        return False
    return (
        PipesEnvVarParamsLoader().is_dagster_pipes_process()
        or PipesCliArgsParamsLoader().is_dagster_pipes_process()
    )


def _materialization_metadata(result: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "output_path": {"raw_value": result.output_dir, "type": "path"},
        "lineage_file": {"raw_value": result.lineage_path, "type": "path"},
        "global_step": {"raw_value": result.global_step, "type": "int"},
        "steps_this_run": {"raw_value": result.steps_this_run, "type": "int"},
        "tokens_per_s": {"raw_value": round(result.tokens_per_s, 1), "type": "float"},
        "train_runtime_s": {"raw_value": round(result.train_runtime_s, 1), "type": "float"},
        "resumed_from": {"raw_value": result.resumed_from or "", "type": "text"},
    }
    if result.final_loss is not None:
        meta["final_loss"] = {"raw_value": result.final_loss, "type": "float"}
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, train, report; return the exit status."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from xinst_assets.training.trainer import train

    if _pipes_active():
        from dagster_pipes import PipesCliArgsParamsLoader, PipesEnvVarParamsLoader, open_dagster_pipes

        loader = (
            PipesEnvVarParamsLoader()
            if PipesEnvVarParamsLoader().is_dagster_pipes_process()
            else PipesCliArgsParamsLoader()
        )
        with open_dagster_pipes(params_loader=loader) as pipes:
            if args.config:
                config = TrainConfig.from_json(args.config)
            else:
                extra = pipes.extras.get("train_config")
                if not isinstance(extra, dict):
                    raise SystemExit(
                        "no training config: pass --config run.json or the Pipes extra 'train_config'"
                    )
                config = TrainConfig.from_dict(extra)
            result = train(config, log=pipes.log.info)
            pipes.report_asset_materialization(
                metadata=_materialization_metadata(result), asset_key=args.asset_key
            )
        return 0
    if not args.config:
        print("error: --config run.json is required", file=sys.stderr)
        return 2
    train(TrainConfig.from_json(args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
