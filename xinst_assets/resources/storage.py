"""Where a run keeps files: the data home and its scratch space."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from dagster import ConfigurableResource
from pydantic import Field

from xinst_assets.settings import Paths


class XinstStorage(ConfigurableResource):
    """The data home (``XINST_HOME``): warehouse, models, exports, reports and scratch live under it."""

    home: str = Field(description="Folder under which xinst keeps everything it writes.")

    @property
    def paths(self) -> Paths:
        return Paths(Path(self.home).expanduser())

    @contextlib.contextmanager
    def scratch_dir(self, prefix: str) -> Iterator[Path]:
        """A private temporary folder under the home, removed afterwards (also on failure)."""
        root = self.paths.scratch
        root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=root))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
