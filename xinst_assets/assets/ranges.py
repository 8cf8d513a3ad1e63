"""Runs over several language partitions at once.

A run materializes one language partition (a backfill from the UI, the new-shard sensor) or a range of them
(the nightly refresh, ``xinst materialize`` over several languages): one process, one dbt invocation per model
and one batch of warehouse windows per stage, instead of a run per language paying each of those again. Every
stage works over ``context.partition_keys``; metadata stays per language (``add_asset_metadata`` with the
partition key), and an asset check, which Dagster records once per step, passes only when it passes for every
language of the run, with each language's figures in its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypeVar

from dagster import (
    AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, Failure, MetadataValue, RetryRequested,
)

from xinst_assets.assets.reporting import markdown_table
from xinst_assets.languages import Language, LanguageRegistry

T = TypeVar("T")


def run_languages(context: AssetExecutionContext, registry: LanguageRegistry) -> list[Language]:
    """The languages this run materializes, in partition order (one for a single partition's run)."""
    return [registry.get(key) for key in context.partition_keys]


def add_language_metadata(
    context: AssetExecutionContext, code: str, metadata: Mapping[str, Any], asset_key: str | None = None
) -> None:
    """Record ``metadata`` on this run's materialization of language ``code`` (of ``asset_key``)."""
    context.add_asset_metadata(dict(metadata), asset_key=asset_key, partition_key=code)


@dataclass
class LanguageCheck:
    """One asset check evaluated per language, reported as one result for the run."""

    check_name: str
    asset_key: str
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR
    outcomes: dict[str, tuple[bool, dict[str, Any]]] = field(default_factory=dict)

    def add(self, code: str, passed: bool, metadata: Mapping[str, Any]) -> None:
        self.outcomes[code] = (bool(passed), dict(metadata))

    def result(self) -> AssetCheckResult:
        """The check's result: a single language's as it is; several languages' combined (passes only if each
        passes; the failing languages and a table of every language's figures in the metadata). A failing
        language's ``reason`` (when its metadata has one) is also the result's description."""
        failing = sorted(code for code, (passed, _) in self.outcomes.items() if not passed)
        reasons = [f"{code}: {_plain(self.outcomes[code][1]['reason'])}" for code in failing
                   if "reason" in self.outcomes[code][1]]
        description = "; ".join(reasons) if reasons else None
        if len(self.outcomes) == 1:
            (passed, metadata), = self.outcomes.values()
            return AssetCheckResult(check_name=self.check_name, asset_key=self.asset_key, passed=passed,
                                    severity=self.severity, metadata=metadata, description=description)
        columns = sorted({name for _, metadata in self.outcomes.values() for name in metadata})
        rows = [[code, "yes" if passed else "NO", *(_plain(metadata.get(c)) for c in columns)]
                for code, (passed, metadata) in self.outcomes.items()]
        return AssetCheckResult(
            check_name=self.check_name, asset_key=self.asset_key, passed=not failing, severity=self.severity,
            metadata={"languages": len(self.outcomes), "failing_languages": ", ".join(failing) or "none",
                      "by_language": markdown_table(rows, ["language", "passed", *columns])},
            description=description,
        )


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, MetadataValue) else value


def for_each_language(
    context: AssetExecutionContext, languages: Sequence[Language], work: Callable[[Language], T]
) -> dict[str, T]:
    """``work`` for each language in turn. A language that fails does not stop the others (their work is
    kept: each stage writes its languages one transaction at a time); the step then fails naming them all."""
    results: dict[str, T] = {}
    errors: dict[str, BaseException] = {}
    for lang in languages:
        try:
            results[lang.code] = work(lang)
        except RetryRequested:
            raise  # a transient failure: the step runs again (the languages done are cached by then)
        except Exception as error:  # noqa: BLE001 (reported below, with the other languages' errors)
            if len(languages) == 1:
                raise
            context.log.error(f"{lang.code}: {type(error).__name__}: {error}")
            errors[lang.code] = error
    if errors:
        raise Failure(
            f"{len(errors)} of {len(languages)} languages failed: {', '.join(sorted(errors))}",
            metadata={"errors": MetadataValue.md("\n".join(
                f"- {code}: {type(e).__name__}: {e}" for code, e in sorted(errors.items())))},
        ) from next(iter(errors.values()))
    return results
