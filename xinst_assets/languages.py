"""The language registry: which languages xinst builds data for, and their per-language settings.

The registry is configuration, not code. The packaged defaults live in ``config/languages.yaml``; a user adds
or overrides languages with a YAML file of the same shape named by ``XINST_LANGUAGES_FILE`` (or passed to
:func:`load_registry`). Each language code is one Dagster partition.

A language's ``calibration`` (its quality rules calibrated on reference text, with the provenance of every
value: :mod:`xinst_assets.core.calibration`) is either inline or the path of a YAML file, relative to the
registry file that names it; the packaged ones are under ``config/calibration/``. ``xinst calibrate`` writes
them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from xinst_assets.errors import ConfigError

PACKAGED_REGISTRY = Path(__file__).parent / "config" / "languages.yaml"
LANGUAGES_FILE_ENV = "XINST_LANGUAGES_FILE"

_CODE = re.compile(r"^[a-z]{2,3}$")
_SCRIPT = re.compile(r"^[A-Z][a-z]{3}$")


class RegistryError(ConfigError):
    """A language registry file that cannot be used; the message names the file and the entry."""


class RegistryFileNotFound(RegistryError, FileNotFoundError):
    """The registry file named by the user does not exist."""


class UnknownLanguageError(KeyError):
    """Raised for a language code that is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class Language:
    """One language of the registry."""

    code: str
    name: str
    script: str
    iso639_3: str | None = None
    lid_threshold: float = 0.65  # datatrove's LanguageFilter default
    lid_labels: tuple[str, ...] = ()
    lid_confusable: tuple[str, ...] = ()
    quality: Mapping[str, Any] = field(default_factory=dict)
    # core.calibration.Calibration (typed loosely: the core imports this module); None: not calibrated.
    calibration: Any = None

    @property
    def label_codes(self) -> frozenset[str]:
        """Every LID label stem that means this language (``fi``, ``fin``, ``fin_Latn`` ...)."""
        codes = {self.code, *self.lid_labels}
        if self.iso639_3:
            codes.add(self.iso639_3)
        return frozenset(codes | {f"{c}_{self.script}" for c in codes})


@dataclass(frozen=True)
class LanguageRegistry:
    """An ordered, validated set of languages."""

    languages: tuple[Language, ...]

    @property
    def codes(self) -> list[str]:
        return [lang.code for lang in self.languages]

    def get(self, code: str) -> Language:
        """Return the language for ``code`` or raise :class:`UnknownLanguageError` naming the known ones."""
        for lang in self.languages:
            if lang.code == code:
                return lang
        raise UnknownLanguageError(
            f"Unknown language code {code!r}. Known languages: {', '.join(self.codes)}. "
            f"Add it to a registry file named by {LANGUAGES_FILE_ENV}."
        )

    def __contains__(self, code: object) -> bool:
        return any(lang.code == code for lang in self.languages)

    def __iter__(self):
        return iter(self.languages)

    def __len__(self) -> int:
        return len(self.languages)


def _parse_language(code: str, spec: Mapping[str, Any], source: Path) -> Language:
    if not isinstance(code, str) or not _CODE.match(code):
        raise RegistryError(f"{source}: language code {code!r} must be 2-3 lowercase letters (ISO 639-1 or 639-3, "
                            "like 'sw' or 'fil'); rename the entry")
    if not isinstance(spec, Mapping):
        raise RegistryError(f"{source}: entry for {code!r} must be a mapping, got {type(spec).__name__}")
    unknown = set(spec) - {f for f in Language.__dataclass_fields__ if f != "code"}
    if unknown:
        raise RegistryError(f"{source}: entry for {code!r} has unknown keys {sorted(unknown)}")
    for required in ("name", "script"):
        if not spec.get(required):
            raise RegistryError(f"{source}: entry for {code!r} needs {required!r}")
    if not _SCRIPT.match(str(spec["script"])):
        raise RegistryError(f"{source}: script {spec['script']!r} of {code!r} must be an ISO 15924 code like 'Latn'")
    calibration = _parse_calibration(code, spec.get("calibration"), source)
    try:
        threshold = float(spec.get("lid_threshold", 0.65))
    except (TypeError, ValueError):
        raise RegistryError(f"{source}: lid_threshold of {code!r} must be a number within [0, 1], "
                            f"got {spec.get('lid_threshold')!r}") from None
    if not 0.0 <= threshold <= 1.0:
        raise RegistryError(f"{source}: lid_threshold of {code!r} must be within [0, 1], got {threshold}")
    return Language(
        code=code,
        name=str(spec["name"]),
        script=str(spec["script"]),
        iso639_3=spec.get("iso639_3"),
        lid_threshold=threshold,
        lid_labels=tuple(spec.get("lid_labels") or ()),
        lid_confusable=tuple(spec.get("lid_confusable") or ()),
        quality=dict(spec.get("quality") or {}),
        calibration=calibration,
    )


def _parse_calibration(code: str, spec: Any, source: Path) -> Any:
    """The calibration of ``code``: inline (a mapping) or a YAML file named relative to ``source``."""
    if spec is None:
        return None
    from xinst_assets.core.calibration import Calibration  # the core imports this module: import late

    where = str(source)
    if isinstance(spec, str):
        path = Path(spec) if Path(spec).is_absolute() else source.parent / spec
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError as exc:
            raise RegistryFileNotFound(f"{source}: calibration file of {code!r} not found: {path}") from exc
        where = str(path)
        if isinstance(spec, Mapping) and "calibration" in spec:  # a file written by `xinst calibrate --out`
            spec = spec["calibration"]
    from xinst_assets.core.quality import QualityThresholds, apply_overrides

    try:
        calibration = Calibration.from_mapping(code, spec, where)
        apply_overrides(QualityThresholds(), calibration.overrides(), f"{where}: calibration of {code!r}")
    except (TypeError, ValueError) as exc:
        raise RegistryError(str(exc)) from None
    return calibration


def _read_file(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise RegistryFileNotFound(f"Language registry file not found: {path} (named by {LANGUAGES_FILE_ENV} or "
                                   "passed in): check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: cannot read the language registry file: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RegistryError(f"{path}: not valid YAML{where} ({problem}); fix the file") from None


def _read_entries(path: Path) -> tuple[dict[str, Any], Any]:
    """The file's ``languages`` mapping and its ``only`` list (None when absent)."""
    data = _read_file(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("languages"), Mapping):
        raise RegistryError(f"{path}: expected a top-level 'languages:' mapping of code -> settings")
    only = data.get("only")
    if only is not None and (not isinstance(only, list) or not all(isinstance(c, str) for c in only)):
        raise RegistryError(f"{path}: 'only' must be a list of language codes, like [sw, fi]")
    return dict(data["languages"]), only


def load_registry(extra_file: str | Path | None = None) -> LanguageRegistry:
    """Load the packaged registry, merged with ``extra_file`` (or ``$XINST_LANGUAGES_FILE``) if given.

    Entries of the extra file replace packaged entries of the same code and add new ones; with
    ``only: [codes]`` at its top level, the registry is narrowed to those codes.
    """
    entries, _ = _read_entries(PACKAGED_REGISTRY)
    sources = {code: PACKAGED_REGISTRY for code in entries}
    only: list[str] | None = None
    extra = extra_file or os.environ.get(LANGUAGES_FILE_ENV)
    if extra:
        extra_path = Path(extra)
        extra_entries, only = _read_entries(extra_path)
        entries.update(extra_entries)
        sources.update({code: extra_path for code in extra_entries})
    languages = tuple(_parse_language(code, spec, sources[code]) for code, spec in entries.items())
    registry = LanguageRegistry(languages)
    if only:
        unknown = [code for code in only if code not in registry]
        if unknown:
            raise RegistryError(f"{extra}: 'only' names {', '.join(map(repr, unknown))}, not in the registry "
                                f"(known: {', '.join(registry.codes)}); add an entry under 'languages:' or remove it")
        registry = LanguageRegistry(tuple(registry.get(code) for code in only))
    return registry
