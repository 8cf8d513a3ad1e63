"""Export the diversified dataset in a layout that Hugging Face ``datasets`` loads directly.

::

    <out_dir>/
      README.md                               dataset card; its YAML header declares one config per language
                                              and "all" (the default), so load_dataset(<out_dir>, "sw") works
      data/<lang>/train-00000-of-00001.parquet
      jsonl/<lang>/train-00000-of-00001.jsonl the same rows as JSON lines (UTF-8, one object a line)
      .xinst_export                           marker: this folder is an xinst export (safe to replace)

The "all" config points at every language's Parquet files (``data/*/train-*.parquet``), so the combined set
is not stored twice. Every file has the same columns and types (:data:`EXPORT_SCHEMA`).

The export is atomic: everything is written into a fresh sibling folder, which then replaces ``out_dir`` by
rename, so a crash never leaves a half-written export (at worst, between the two renames, the previous export
sits complete in a hidden ``.<name>.old-*`` sibling).
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import polars as pl
import yaml

from xinst_assets.core.prompts import ANSWER_IN, ANSWER_IN_REFINED, RESPONSE_PROMPT
from xinst_assets.core.verbs import top_verbs

EXPORT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "lang": pl.String(),
    "lang_name": pl.String(),
    "instruction": pl.String(),
    "response": pl.String(),
    "refined": pl.Boolean(),
    "score": pl.Float64(),
    "label": pl.Int64(),
    "cluster": pl.Int64(),
    "source_url": pl.String(),
    "source_doc_id": pl.String(),
}
OPTIONAL_COLUMNS = ("source_url", "source_doc_id")
ALL_CONFIG = "all"
MARKER = ".xinst_export"
# One Parquet / JSONL file per this many rows: a 32k-row language (X-Instruction's budget) is one file of
# roughly 40-60 MB; the Hub's viewer and `datasets` stream shards of this size comfortably.
DEFAULT_ROWS_PER_FILE = 100_000

LICENCE_NOTE = (
    "The responses are web text taken from the source corpus named under Provenance (refined rows are a "
    "model's rewrite of such text). **The source corpus's licence and terms of use apply to them**, "
    "including "
    "any rights of the original publishers of the web pages; this export does not relicense them. The "
    "instructions, scores and refinements were produced by the models named under Provenance, whose terms of "
    "use may also apply. The licence of the xinst code does not cover this data. Check both before "
    "redistributing or training on it."
)


@dataclass(frozen=True)
class LanguageStats:
    """Per-language statistics of the export (lengths in characters)."""

    lang: str
    lang_name: str
    rows: int
    refined: int
    instruction_chars_mean: float
    instruction_chars_sd: float
    response_chars_mean: float
    response_chars_sd: float
    score_mean: float
    top_verbs: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class ExportSummary:
    """What was written: the folder, rows per language, the files (relative paths) and the statistics."""

    out_dir: Path
    rows_by_lang: dict[str, int]
    files: tuple[str, ...]
    stats: tuple[LanguageStats, ...]

    @property
    def rows(self) -> int:
        return sum(self.rows_by_lang.values())


def to_export_frame(rows: pl.DataFrame, lang_names: Mapping[str, str] | None = None) -> pl.DataFrame:
    """The rows in the export schema: ``pair_id`` becomes ``id``; missing ``lang_name`` comes from
    ``lang_names`` (or the language registry); missing optional source columns are null.
    """
    if "id" not in rows.columns and "pair_id" in rows.columns:
        rows = rows.rename({"pair_id": "id"})
    if "lang_name" not in rows.columns and "lang" in rows.columns:
        names = (
            dict(lang_names) if lang_names is not None else _registry_names(rows["lang"].unique().to_list())
        )
        unknown = sorted(set(rows["lang"].unique().to_list()) - set(names))
        if unknown:
            raise ValueError(f"export: no language name for {unknown}; pass lang_names")
        rows = rows.with_columns(
            pl.col("lang").replace_strict(names, return_dtype=pl.String).alias("lang_name")
        )
    for column in OPTIONAL_COLUMNS:
        if column not in rows.columns:
            rows = rows.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    missing = [c for c in EXPORT_SCHEMA if c not in rows.columns]
    if missing:
        raise ValueError(f"export: rows lack columns {missing}; the export needs {list(EXPORT_SCHEMA)}")
    try:
        frame = rows.select([pl.col(c).cast(t, strict=True) for c, t in EXPORT_SCHEMA.items()])
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise ValueError(f"export: a column cannot be converted to the export schema: {exc}") from exc
    for column in ("id", "lang", "lang_name", "instruction", "response"):
        if frame[column].null_count():
            raise ValueError(f"export: {frame[column].null_count()} rows have no {column}")
    if frame["id"].n_unique() != len(frame):
        raise ValueError("export: ids must be unique")
    if ALL_CONFIG in frame["lang"].unique().to_list():
        raise ValueError(
            f"export: {ALL_CONFIG!r} is reserved for the combined config and cannot be a language"
        )
    return frame


def _registry_names(codes: list[str]) -> dict[str, str]:
    from xinst_assets.languages import load_registry

    registry = load_registry()
    return {code: registry.get(code).name for code in codes}


def _sd(values: pl.Series) -> float:
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return float(sd) if sd is not None and not math.isnan(sd) else 0.0


def language_stats(frame: pl.DataFrame, verbs: int = 5) -> list[LanguageStats]:
    """Statistics per language of an export frame, in language-code order."""
    stats = []
    for lang in sorted(frame["lang"].unique().to_list()):
        part = frame.filter(pl.col("lang") == lang)
        inst, resp = part["instruction"].str.len_chars(), part["response"].str.len_chars()
        stats.append(
            LanguageStats(
                lang=lang,
                lang_name=str(part["lang_name"][0]),
                rows=len(part),
                refined=int(part["refined"].fill_null(False).sum()),
                instruction_chars_mean=float(inst.mean()),
                instruction_chars_sd=_sd(inst),
                response_chars_mean=float(resp.mean()),
                response_chars_sd=_sd(resp),
                score_mean=float(part["score"].mean())
                if part["score"].null_count() < len(part)
                else float("nan"),
                top_verbs=tuple(top_verbs(part["instruction"].to_list(), verbs)),
            )
        )
    return stats


def dataset_card(
    stats: list[LanguageStats],
    provenance: Mapping[str, Any],
    title: str = "xinst cross-lingual instruction data",
) -> str:
    """The README.md dataset card: YAML header with the configs, statistics, provenance, licence, prompts."""
    codes = [s.lang for s in stats]
    total = sum(s.rows for s in stats)
    header = {
        "pretty_name": title,
        "language": ["en", *codes],
        "multilinguality": "multilingual",
        "task_categories": ["text-generation"],
        "tags": ["instruction-tuning", "cross-lingual", "x-instruction", "xinst"],
        "license": "other",
        "configs": [
            {
                "config_name": ALL_CONFIG,
                "default": True,
                "data_files": [{"split": "train", "path": "data/*/train-*.parquet"}],
            },
            *(
                {
                    "config_name": code,
                    "data_files": [{"split": "train", "path": f"data/{code}/train-*.parquet"}],
                }
                for code in codes
            ),
        ],
    }
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {title}",
        "",
        "Cross-lingual instruction-tuning pairs: an **English instruction** and a **response in another "
        "language**, built from natural web text with the X-Instruction method "
        "(Li et al., ACL Findings 2024) "
        "by xinst: a model wrote an instruction for each web text, pairs were scored on a 3-level scale, "
        "partial answers were refined, and the final set was sampled across clusters of instruction "
        "embeddings.",
        "",
        f"{total:,} pairs in {len(codes)} language(s).",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("path/to/this/folder", "{codes[0] if codes else ALL_CONFIG}")  # one language',
        f'everything = load_dataset("path/to/this/folder", "{ALL_CONFIG}")',
        "```",
        "",
        "Parquet files are under `data/<lang>/`, the same rows as JSON lines under `jsonl/<lang>/`.",
        "",
        "## Statistics",
        "",
        "Lengths in characters, mean ± standard deviation.",
        "",
        "| Language | Code | Pairs | Refined | Instruction length | Response length | Mean score |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        lines.append(
            f"| {s.lang_name} | {s.lang} | {s.rows:,} | {s.refined:,} | "
            f"{s.instruction_chars_mean:,.0f} ± {s.instruction_chars_sd:,.0f} | "
            f"{s.response_chars_mean:,.0f} ± {s.response_chars_sd:,.0f} | {s.score_mean:.2f} |"
        )
    lines += [
        "",
        "Most common first verbs of the instructions "
        "(questions count as `question`, see `xinst_assets/core/verbs.py`):",
        "",
    ]
    for s in stats:
        verbs = ", ".join(f"{verb} ({count:,})" for verb, count in s.top_verbs) or "-"
        lines.append(f"- **{s.lang}**: {verbs}")
    lines += [
        "",
        "## Columns",
        "",
        "| Column | Type | Meaning |",
        "|---|---|---|",
        "| id | string | stable pair id |",
        "| lang | string | language code of the response (ISO 639) |",
        "| lang_name | string | English name of that language (used in the prompt) |",
        "| instruction | string | English instruction |",
        "| response | string | response in `lang` |",
        "| refined | bool | the response was rewritten by the model "
        "(train with the assistant-style prompt) |",
        "| score | float | expected score of the 3-level judgement (1 unusable ... 3 a good answer) |",
        "| label | int | the judged level (1, 2 or 3) |",
        "| cluster | int | instruction-embedding cluster within its language (0 = largest) |",
        "| source_url | string | URL of the web text, when known |",
        "| source_doc_id | string | content id of the web document |",
        "",
        "## Prompt format for training",
        "",
        "The X-Instruction response prompt (`{lang_name}` is the English name of the response language; note "
        "the space before the blank line). Rows with `refined = true` use the assistant-style variant of the "
        '"Answer in" sentence.',
        "",
        "```",
        RESPONSE_PROMPT.format(instruction="{instruction}", answer_in=ANSWER_IN).rstrip("\n"),
        "```",
        "",
        f"Refined rows: `{ANSWER_IN_REFINED}`",
        "",
        "## Provenance",
        "",
    ]
    if provenance:
        lines += ["| Item | Value |", "|---|---|"]
        for key, value in provenance.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            cell = str(text).replace("|", r"\|").replace("\n", " ")
            lines.append(f"| {key} | {cell} |")
    else:
        lines.append("Not recorded.")
    lines += ["", "## Licence", "", LICENCE_NOTE, ""]
    return "\n".join(lines)


def _write_shards(frame: pl.DataFrame, folder: Path, suffix: str, rows_per_file: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    shards = max(1, math.ceil(len(frame) / rows_per_file))
    paths = []
    for i in range(shards):
        path = folder / f"train-{i:05d}-of-{shards:05d}.{suffix}"
        part = frame.slice(i * rows_per_file, rows_per_file)
        if suffix == "parquet":
            part.write_parquet(path, compression="zstd", statistics=True)
        else:
            part.write_ndjson(path)
        paths.append(path)
    return paths


def export_dataset(
    rows: pl.DataFrame,
    out_dir: str | Path,
    provenance: Mapping[str, Any],
    lang_names: Mapping[str, str] | None = None,
    title: str = "xinst cross-lingual instruction data",
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
) -> ExportSummary:
    """Write ``rows`` (all languages, a ``lang`` column) as Parquet + JSONL + dataset card into ``out_dir``.

    ``provenance`` (source corpus, generator model, scorer, thresholds, run id ...) is printed in the card;
    keep secrets out of it. ``out_dir`` is replaced atomically; an existing folder is replaced only if it is
    empty or a previous xinst export.
    """
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file must be at least 1, got {rows_per_file}")
    frame = to_export_frame(rows, lang_names)
    if frame.is_empty():
        raise ValueError("export: no rows to export")
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not (
        out_dir.is_dir() and ((out_dir / MARKER).exists() or not any(out_dir.iterdir()))
    ):
        raise FileExistsError(f"{out_dir} exists and is not an xinst export; refusing to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        stats = language_stats(frame)
        files: list[Path] = []
        for s in stats:
            part = frame.filter(pl.col("lang") == s.lang)
            files += _write_shards(part, tmp / "data" / s.lang, "parquet", rows_per_file)
            files += _write_shards(part, tmp / "jsonl" / s.lang, "jsonl", rows_per_file)
        (tmp / "README.md").write_text(dataset_card(stats, provenance, title), encoding="utf-8")
        rows_by_lang = {s.lang: s.rows for s in stats}
        (tmp / MARKER).write_text(
            json.dumps({"rows_by_lang": rows_by_lang, "stats": [asdict(s) for s in stats]}, indent=1),
            encoding="utf-8",
        )
        relative = tuple(sorted(p.relative_to(tmp).as_posix() for p in [*files, tmp / "README.md"]))
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportSummary(out_dir=out_dir, rows_by_lang=rows_by_lang, files=relative, stats=tuple(stats))


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        tmp.rename(out_dir)
        return
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex}"
    out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
