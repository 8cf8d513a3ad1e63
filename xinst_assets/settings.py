"""Where xinst keeps its data, and the one setting that moves it.

Everything xinst writes (the DuckDB warehouse, caches, model checkpoints, exports) lives under one folder,
``XINST_HOME``. By default that is ``var/`` in the project checkout when running from one, else
``~/.xinst``. Settings are read when the definitions are built, not at import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "XINST_HOME"
PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
SAMPLE_DIR = PACKAGE_DIR / "data" / "sample"
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"


def default_home() -> Path:
    """``$XINST_HOME`` if set; ``var/`` beside the package in a checkout; else ``~/.xinst``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser().resolve()
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / "var"
    return Path.home() / ".xinst"


@dataclass(frozen=True)
class Paths:
    """The layout under the data home."""

    home: Path

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def exports(self) -> Path:
        return self.home / "exports"

    @property
    def scratch(self) -> Path:
        return self.home / "scratch"

    @property
    def reports(self) -> Path:
        return self.home / "reports"
