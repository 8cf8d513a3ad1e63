"""The language partitions, built from the language registry."""

from __future__ import annotations

from dagster import StaticPartitionsDefinition

from xinst_assets.languages import LanguageRegistry


def language_partitions(registry: LanguageRegistry) -> StaticPartitionsDefinition:
    """One partition per registry language, keyed by its ISO 639 code."""
    return StaticPartitionsDefinition(registry.codes)
