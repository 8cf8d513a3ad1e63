"""How training runs are launched: a subprocess through Dagster Pipes, alone or under accelerate/torchrun."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

LAUNCH_DIR = Path(__file__).resolve().parent.parent / "training" / "launch"


class TrainingLauncher(ConfigurableResource):
    """Launches ``python -m xinst_assets.training`` in its own process (GPU memory is freed when it ends).

    ``launcher``: ``python`` (one process), ``accelerate`` (``accelerate launch`` with ``accelerate_config``,
    e.g. the packaged FSDP or multi-GPU files) or ``torchrun`` (``nproc_per_node`` processes).
    """

    launcher: str = Field(default="python", description="python | accelerate | torchrun")
    nproc_per_node: int = Field(default=1, description="Processes (GPUs) per node for accelerate/torchrun.")
    accelerate_config: str | None = Field(
        default=None, description="accelerate config file; relative names resolve in xinst_assets/training/launch."
    )

    def command(self, config_path: Path) -> list[str]:
        """The command line that trains with the run config at ``config_path``."""
        module = ["-m", "xinst_assets.training", "--config", str(config_path)]
        if self.launcher == "python":
            return [sys.executable, *module]
        if self.launcher == "torchrun":
            return [_tool("torchrun"), f"--nproc_per_node={self.nproc_per_node}", *module]
        if self.launcher == "accelerate":
            cmd = [_tool("accelerate"), "launch", f"--num_processes={self.nproc_per_node}"]
            if self.accelerate_config:
                cfg = Path(self.accelerate_config)
                cfg = cfg if cfg.is_absolute() or cfg.exists() else LAUNCH_DIR / cfg
                if not cfg.is_file():
                    raise FileNotFoundError(f"accelerate config not found: {cfg}")
                cmd.append(f"--config_file={cfg}")
            return [*cmd, *module]
        raise ValueError(f"unknown launcher {self.launcher!r}: use python, accelerate or torchrun")


def _tool(name: str) -> str:
    """The tool from this Python environment's bin folder, else from PATH."""
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed in this environment")
    return found
