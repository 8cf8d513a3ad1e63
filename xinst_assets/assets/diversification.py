"""Stage 5: the diversified dataset per language, its blocking checks, and the export that `datasets` loads."""

import functools
from typing import Any

import polars as pl
from dagster import (
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    asset,
)
from pydantic import Field

from xinst_assets.assets.ranges import LanguageCheck, add_language_metadata, for_each_language, run_languages
from xinst_assets.assets.reporting import markdown_table
from xinst_assets.assets.transient import retry_transient
from xinst_assets.core.candidates import copies_text
from xinst_assets.core.diversify import DiversifyConfig, compare_with_random, diversify
from xinst_assets.core.emptiness import CHECK_NAME as NOT_EMPTY, OutputOutcome, label_counts, none_accepted_reason
from xinst_assets.core.export import export_dataset, language_stats
from xinst_assets.core.plots import cluster_size_figure, figure_markdown, length_histogram_figure, score_histogram_figure
from xinst_assets.core.progress import Progress
from xinst_assets.core.verbs import top_verbs
from xinst_assets.embedding.cache import embed_with_cache
from xinst_assets.languages import Language, LanguageRegistry
from xinst_assets.resources.embedding import EmbeddingModel
from xinst_assets.resources.lid import LidModel
from xinst_assets.resources.storage import XinstStorage
from xinst_assets.store import Store
from xinst_assets.store.dataset import accepted_pairs, dataset_rows, replace_diversified
COLUMNS = ["pair_id", "doc_id", "instruction", "response", "source_url", "refined", "score", "label"]
CHECKS = {
    "no_empty_fields": "Every pair has a non-empty instruction and response.",
    "response_language_matches": "At least 95% of responses are in the partition's language (fastText).",
    "labels_at_threshold": "Every pair is labelled at or above the acceptance level.",
    "unique_ids": "Pair ids are unique.",
    "instruction_not_copied": "No instruction copies its response (shared word 8-gram or substring).",
    NOT_EMPTY: "A language with scored pairs gets at least one selected pair; otherwise the check fails with "
    "the label counts (for example '0 pairs reached label 3: labels 1/2/3 = 0/32/0').",
}


class DiversifyRunConfig(Config):
    """Per-run settings of the diversified selection."""

    budget: int = Field(default=32_000, description="Pairs per language (X-Instruction: 32k).")
    n_clusters: int | None = Field(default=None, description="k-means clusters (None: derived from the budget).")
    seed: int = Field(default=0, description="Seed of clustering and sampling.")
    accept_label: int = Field(default=3, description="Only pairs labelled at least this are eligible.")


def build_diversification_assets(partitions_def: PartitionsDefinition, registry: LanguageRegistry) -> list:
    """``diversified_dataset`` (per language, with blocking checks) and ``dataset_export`` (all languages)."""

    check_specs = [
        AssetCheckSpec(name, asset="diversified_dataset", blocking=True, description=text)
        for name, text in CHECKS.items()
    ]

    @asset(
        name="diversified_dataset",
        partitions_def=partitions_def,
        deps=["scored_pairs"],
        group_name="dataset",
        kinds={"python", "scikitlearn", "duckdb"},
        owners=["team:ml"],
        check_specs=check_specs,
        description=(
            "The per-language training set: English instructions of accepted pairs are embedded (cached by "
            "content), near-identical instructions dropped, k-means clustered, and pairs sampled round-robin "
            "across clusters, best score first, up to the budget (X-Instruction: 32k per language). Deterministic "
            "given the seed. Blocking checks guard the export. Table: diversified_dataset."
        ),
    )
    def diversified_dataset(
        context: AssetExecutionContext, config: DiversifyRunConfig, store: Store,
        embedding_model: EmbeddingModel, lid_model: LidModel,
    ):
        languages = run_languages(context, registry)
        warehouse = store.open()
        # Loaded once per run, when first needed (an empty pool needs no embedder).
        load_embedder = functools.cache(embedding_model.load)
        identifier = functools.cache(lambda: lid_model.identifier(registry))
        checks = {name: LanguageCheck(name, "diversified_dataset", AssetCheckSeverity.ERROR) for name in CHECKS}

        def diversify_language(lang: Language) -> dict[str, Any]:
            """Select and store ``lang``'s diversified set and evaluate its checks; return its metadata."""
            with retry_transient(context):
                pool, scored_labels = accepted_pairs(warehouse, lang.code, config.accept_label)
            if pool.is_empty():
                selected, report_meta, figures, comparison = pool.with_columns(
                    pl.lit(0).alias("cluster"), pl.lit(0).alias("rank")), {"rows_in": 0}, {}, {}
                context.log.warning(f"{lang.code}: no accepted pairs; the diversified set is empty")
            else:
                embedder = load_embedder()
                progress = Progress(f"diversified_dataset:{lang.code}:embed", pool.height, context.log.info,
                                    unit="texts")
                cached = embed_with_cache(embedder, pool["instruction"].to_list(), warehouse.read, warehouse.write,
                                          on_chunk=progress.advance, transaction=warehouse.transaction)
                progress.finish()
                result = diversify(pool, cached.matrix, DiversifyConfig(
                    budget=config.budget, n_clusters=config.n_clusters, seed=config.seed))
                selected = result.selected
                report = result.report
                report_meta = {**report.as_metadata(), "embedding_cache_hits": cached.hits,
                               "embedding_cache_misses": cached.misses}
                comparison = compare_with_random(result.pool, seed=config.seed).as_metadata()
                figures = {
                    "cluster_sizes": figure_markdown(cluster_size_figure(report.cluster_sizes,
                                                                         report.selected_cluster_sizes)),
                    "score_histogram": figure_markdown(score_histogram_figure(pool["score"].to_list(),
                                                                              selected["score"].to_list())),
                    "lengths": figure_markdown(length_histogram_figure(
                        selected["instruction"].str.len_chars().to_list(),
                        selected["response"].str.len_chars().to_list())),
                }
            out = selected.select([*COLUMNS, "cluster", "rank"]).with_columns(pl.lit(lang.code).alias("lang"))
            with retry_transient(context):
                replace_diversified(warehouse, lang.code, out)
            stats = language_stats(out.with_columns(pl.lit(lang.name).alias("lang_name"))) if out.height else []
            for name, (passed, metadata) in _check_outcomes(
                    out, lang.code, config.accept_label, identifier()).items():
                checks[name].add(lang.code, passed, metadata)
            scored = sum(scored_labels.values())
            reason = (none_accepted_reason(label_counts([]) | scored_labels, config.accept_label) if pool.is_empty()
                      else f"0 of {pool.height} accepted pairs selected (budget {config.budget})")
            outcome = OutputOutcome(scored, out.height, reason)
            checks[NOT_EMPTY].add(lang.code, outcome.passed, outcome.metadata())
            return {
                "dagster/row_count": out.height,
                **{k: v for k, v in report_meta.items() if k != "config"},
                "diversity_vs_random": MetadataValue.json(comparison),
                "top_verbs": markdown_table(top_verbs(out["instruction"].to_list(), 10) if out.height else [],
                                            ["verb", "count"]),
                "lengths_table": markdown_table(
                    [(s.lang, s.rows, f"{s.instruction_chars_mean:.0f} ± {s.instruction_chars_sd:.0f}",
                      f"{s.response_chars_mean:.0f} ± {s.response_chars_sd:.0f}") for s in stats],
                    ["lang", "pairs", "instruction chars", "response chars"]),
                **{k: MetadataValue.md(v) for k, v in figures.items()},
            }

        results = for_each_language(context, languages, diversify_language)
        for code, metadata in results.items():
            add_language_metadata(context, code, metadata)
        yield MaterializeResult()
        for check in checks.values():
            yield check.result()

    @asset(
        name="dataset_export",
        deps=["diversified_dataset"],
        group_name="dataset",
        kinds={"parquet", "huggingface"},
        owners=["team:ml"],
        description=(
            "Every language's diversified set as a Hugging Face `datasets` folder: Parquet (data/<lang>/) and "
            "JSONL (jsonl/) with a dataset card (statistics, provenance, licence notes, training prompt format); "
            "`datasets.load_dataset(path, '<lang>')` or `'all'` loads it. Written atomically."
        ),
    )
    def dataset_export(context: AssetExecutionContext, store: Store, storage: XinstStorage):
        with retry_transient(context):
            rows, checkpoints = dataset_rows(store)
        out_dir = storage.paths.exports / "xinst-dataset"
        if rows.is_empty():
            context.log.warning("no diversified pairs in any language: nothing to export")
            return MaterializeResult(metadata={"rows": 0, "nothing_to_do": True})
        summary = export_dataset(
            rows, out_dir,
            provenance={"run_id": context.run_id, "instruction_generator": checkpoints.get("instruction_generator"),
                        "method": "X-Instruction (Li et al., 2024)", "pipeline": "xinst"},
            lang_names={lang.code: lang.name for lang in registry},
        )
        return MaterializeResult(metadata={
            "dagster/row_count": summary.rows,
            "path": MetadataValue.path(str(out_dir)),
            "languages": ", ".join(sorted(rows["lang"].unique().to_list())),
            "load_with": MetadataValue.md(f"`datasets.load_dataset('{out_dir}', 'all')`"),
        })

    return [diversified_dataset, dataset_export]


def _check_outcomes(
    out: pl.DataFrame, lang_code: str, accept_label: int, identifier
) -> dict[str, tuple[bool, dict[str, Any]]]:
    """Each check's (passed, metadata) on one language's diversified set."""
    empty = out.filter((pl.col("instruction").str.strip_chars() == "") | (pl.col("response").str.strip_chars() == ""))
    preds = identifier.predict(out["response"].to_list()) if out.height else []
    wrong = [p.lang for p in preds if p.lang != lang_code]
    share = 1 - len(wrong) / len(preds) if preds else 1.0
    below = out.filter(pl.col("label") < accept_label).height
    duplicates = out.height - out["pair_id"].n_unique() if out.height else 0
    copied = sum(copies_text(i, r, 8) for i, r in zip(out["instruction"].to_list(), out["response"].to_list()))
    return {
        "no_empty_fields": (empty.height == 0, {"empty": empty.height}),
        "response_language_matches": (share >= 0.95, {"share_in_language": round(share, 4),
                                                      "wrong_languages": ", ".join(sorted(set(wrong))[:10])}),
        "labels_at_threshold": (below == 0, {"below_threshold": below}),
        "unique_ids": (duplicates == 0, {"duplicate_ids": duplicates}),
        "instruction_not_copied": (copied == 0, {"copied": copied}),
    }
