"""The language partitions, built from the language registry, and runs over ranges of them."""

from __future__ import annotations

from dagster import StaticPartitionsDefinition

from xinst_assets.languages import LanguageRegistry

# Dagster's run tags for a run over a range of partitions (its single-run backfills use the same).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def language_partitions(registry: LanguageRegistry) -> StaticPartitionsDefinition:
    """One partition per registry language, keyed by its ISO 639 code."""
    return StaticPartitionsDefinition(registry.codes)


def contiguous_ranges(codes: list[str], selected: list[str]) -> list[list[str]]:
    """``selected`` languages as runs of consecutive partitions (in ``codes``' order): a range run covers
    every partition between its ends, so a subset with gaps takes one run per stretch."""
    wanted = set(selected)
    unknown = wanted - set(codes)
    if unknown:
        raise ValueError(f"not language partitions: {', '.join(sorted(unknown))}")
    ranges: list[list[str]] = []
    for previous, code in zip([None, *codes], codes):
        if code not in wanted:
            continue
        if ranges and previous == ranges[-1][-1]:
            ranges[-1].append(code)
        else:
            ranges.append([code])
    return ranges


def range_tags(codes: list[str]) -> dict[str, str]:
    """The run tags of a run over the consecutive partitions ``codes``."""
    return {RANGE_START_TAG: codes[0], RANGE_END_TAG: codes[-1]}
