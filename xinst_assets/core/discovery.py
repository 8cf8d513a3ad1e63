"""Finding the shards of a language under the configured source roots, safely.

A source is a folder laid out as ``<folder>/<lang>/**/<file>`` or a glob containing ``{lang}``. Its *root* is
the folder, or the glob's leading part without wildcards or ``{lang}`` (``/data/fineweb2`` for
``/data/fineweb2/{lang}_*/*.parquet``). Discovery walks the tree itself instead of calling :mod:`glob`, which
follows links without limit (two links ``a -> .`` and ``b -> .`` make it walk for ever), and applies these
rules:

* every path is resolved; a link (to a file or a folder) whose target lies outside every configured root is
  skipped, never read: a link to ``/etc`` must not put system files into the warehouse;
* each real folder is walked once: a link back to a folder being walked (a loop) or to a folder already walked
  is skipped, so discovery ends in time proportional to the real tree;
* each real file is listed once, under its resolved path, however many links lead to it;
* FIFOs, sockets and devices are skipped (opening a FIFO would wait for a writer for ever), and so are broken
  links and folders that cannot be listed.

Every skipped path comes back with its reason (:class:`Skipped`), for the asset's metadata and the sensor's log.
Names starting with a dot are ignored, as :mod:`glob` does (partial downloads, editor files).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

# Bumped when ingestion reads the same bytes differently (new columns, new cleaning rules): it is part of each
# shard's fingerprint, so every shard ingested by an older reader is read again, once.
READER_VERSION = 2
SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")

# Why a path was skipped (stable strings: logged, shown in metadata and asserted in tests).
LINK_OUTSIDE_ROOTS = "link_outside_roots"
LINK_LOOP = "link_loop"
FOLDER_ALREADY_WALKED = "folder_already_walked"
SAME_FILE = "same_file"
BROKEN_LINK = "broken_link"
NOT_A_REGULAR_FILE = "not_a_regular_file"
FOLDER_NAMED_LIKE_A_SHARD = "folder_named_like_a_shard"
UNREADABLE_FOLDER = "unreadable_folder"
# Skips that are worth a warning (the others are aliases of what is listed anyway).
WARN_REASONS = frozenset({LINK_OUTSIDE_ROOTS, LINK_LOOP, BROKEN_LINK, NOT_A_REGULAR_FILE,
                          FOLDER_NAMED_LIKE_A_SHARD, UNREADABLE_FOLDER})

HOW_TO_CONFIGURE = ("set XINST_RAW_SOURCES (or the raw_sources resource's patterns) to folders laid out as "
                    "<folder>/<lang>/... or globs containing {lang}")


class SourceError(ValueError):
    """A raw source that cannot be used as configured; the message is one line that says what to do."""


@dataclass(frozen=True)
class Shard:
    """A source file and the facts that tell whether it changed since it was last read.

    ``path`` is where it is read from (resolved); ``key`` is what it is known by in the warehouse: its place in
    its source (see :func:`shard_keys`), so that moving or remounting a source folder neither re-reads its shards
    nor changes a row. A shard made with :meth:`of` alone is known by its path.
    """

    path: str
    size_bytes: int
    mtime_ns: int
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.path)

    @property
    def fingerprint(self) -> str:
        # The reader's version is part of it: a reader that reads differently re-reads every shard once.
        return f"{self.size_bytes}:{self.mtime_ns}:r{READER_VERSION}"

    @classmethod
    def of(cls, path: str | Path) -> "Shard":
        stat_result = os.stat(path)
        return cls(os.path.realpath(path), stat_result.st_size, stat_result.st_mtime_ns)


@dataclass(frozen=True)
class Skipped:
    """A path discovery did not list, and why."""

    path: str
    reason: str
    detail: str

    def line(self) -> str:
        return f"{self.path}: {self.reason} ({self.detail})"


@dataclass
class Discovery:
    """The shards of one language (sorted by path, each real file once) and the paths skipped on the way."""

    shards: list[Shard] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def warnings(self) -> list[Skipped]:
        return [s for s in self.skipped if s.reason in WARN_REASONS]


def is_shard_name(name: str) -> bool:
    return name.endswith(SUFFIXES)


def _has_magic(part: str) -> bool:
    return any(c in part for c in "*?[")


def _split(pattern: str) -> tuple[str, list[str]]:
    """The root of a ``{lang}`` glob (its leading folders without wildcards or ``{lang}``) and the rest."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if "{lang}" in part or _has_magic(part):
            return str(Path(*parts[:i])) if i else ".", list(parts[i:])
    raise SourceError(f"raw source {pattern!r} has no '{{lang}}' component: {HOW_TO_CONFIGURE}")


def source_plans(patterns: list[str]) -> list[tuple[str, str, list[str]]]:
    """Each pattern as (pattern, root folder, components below the root with ``{lang}`` still in them).

    Raises :class:`SourceError` (one line, with what to do) for a pattern that is neither an existing folder
    nor a glob with ``{lang}``, or whose root folder does not exist: a missing root must fail loudly, because
    ingesting "no shards" would remove every ingested row of the language.
    """
    if not patterns:
        raise SourceError(f"no raw source is configured: {HOW_TO_CONFIGURE}")
    plans = []
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if "{lang}" in expanded:
            root, rest = _split(expanded)
        elif os.path.isdir(expanded):
            root, rest = expanded, ["{lang}", "**", "*"]
        elif os.path.exists(expanded):
            raise SourceError(f"raw source {pattern!r} is a file, not a folder or a glob with {{lang}}: "
                              f"{HOW_TO_CONFIGURE}")
        else:
            raise SourceError(f"raw source folder {pattern!r} does not exist: create it, mount it, or "
                              f"{HOW_TO_CONFIGURE}")
        if not os.path.isdir(root):
            raise SourceError(f"raw source {pattern!r}: its folder {root!r} does not exist or is not a folder: "
                              f"create or mount it, or {HOW_TO_CONFIGURE}")
        plans.append((pattern, root, rest))
    return plans


class _Walk:
    """One discovery: the roots every path must stay under, what was seen, what was skipped."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = [os.path.realpath(r) for r in roots]
        self.files: dict[tuple[int, int], tuple[str, os.stat_result]] = {}
        self.walked: set[tuple[int, int, tuple[str, ...]]] = set()
        self.skipped: list[Skipped] = []

    def inside(self, real: str) -> bool:
        return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self.roots)

    def skip(self, path: str, reason: str, detail: str) -> None:
        self.skipped.append(Skipped(path, reason, detail))

    def resolve(self, path: str, parent_real: str) -> tuple[str, os.stat_result] | None:
        """The real path and status of ``path`` (an entry of the folder whose real path is ``parent_real``) if
        it may be used (inside the roots); else record why not."""
        try:
            link = os.lstat(path)
        except OSError:
            return None  # gone since it was listed
        if not stat.S_ISLNK(link.st_mode):  # not a link: its real path is its folder's, one name longer
            return os.path.join(parent_real, os.path.basename(path)), link
        try:
            real = os.path.realpath(path, strict=True)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a chain of links that leads back to itself
                self.skip(path, LINK_LOOP, "the link resolves to itself")
            else:
                self.skip(path, BROKEN_LINK, f"its target does not exist ({exc.strerror})")
            return None
        if not self.inside(real):
            self.skip(path, LINK_OUTSIDE_ROOTS, f"points to {real}, outside the source roots")
            return None
        try:
            return real, os.stat(real)
        except OSError as exc:
            self.skip(path, BROKEN_LINK, f"target {real} cannot be read: {exc.strerror}")
            return None

    def entries(self, folder: str) -> list[str]:
        try:
            with os.scandir(folder) as it:
                return sorted(e.name for e in it)
        except OSError as exc:
            self.skip(folder, UNREADABLE_FOLDER, f"cannot list it: {exc.strerror}; give the pipeline's user "
                                                 "read and execute permission on it")
            return []

    def enter(self, path: str, real: str, st: os.stat_result, rest: list[str], parent_real: str) -> None:
        """Walk the folder ``path`` (real path ``real``) for the pattern components ``rest``, once."""
        key = (st.st_dev, st.st_ino, tuple(rest))
        if key in self.walked:
            if os.path.islink(path):
                if parent_real == real or parent_real.startswith(real.rstrip(os.sep) + os.sep):
                    self.skip(path, LINK_LOOP, f"points to {real}, a folder that contains the link")
                else:
                    self.skip(path, FOLDER_ALREADY_WALKED, f"points to {real}, listed through another path")
            return
        self.walked.add(key)
        self.match(path, real, rest)

    def match(self, folder: str, folder_real: str, rest: list[str]) -> None:
        """List the files under ``folder`` that match the components ``rest``."""
        part, tail = rest[0], rest[1:]
        if part == "**":
            if tail:  # "**" matches no folder too
                self.match_tail(folder, folder_real, tail)
            for name in self.entries(folder):
                if name.startswith("."):
                    continue
                path = os.path.join(folder, name)
                found = self.resolve(path, folder_real)
                if found and stat.S_ISDIR(found[1].st_mode):
                    self.enter(path, found[0], found[1], rest, folder_real)
            return
        self.match_tail(folder, folder_real, rest)

    def match_tail(self, folder: str, folder_real: str, rest: list[str]) -> None:
        part, tail = rest[0], rest[1:]
        if _has_magic(part):
            names = [n for n in self.entries(folder)
                     if fnmatch.fnmatchcase(n, part) and (part.startswith(".") or not n.startswith("."))]
        else:
            names = [part] if os.path.lexists(os.path.join(folder, part)) else []
        for name in names:
            path = os.path.join(folder, name)
            found = self.resolve(path, folder_real)
            if not found:
                continue
            real, st = found
            if tail:
                if stat.S_ISDIR(st.st_mode):
                    self.enter(path, real, st, tail, folder_real)
            elif stat.S_ISDIR(st.st_mode):
                if is_shard_name(name):
                    self.skip(path, FOLDER_NAMED_LIKE_A_SHARD, "a folder, not a file; shards inside it are "
                                                               "listed if the pattern reaches them")
            elif is_shard_name(name):
                self.add_file(path, real, st)

    def add_file(self, path: str, real: str, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            kind = ("FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
                    else "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "special file")
            self.skip(path, NOT_A_REGULAR_FILE, f"a {kind}, not a regular file")
            return
        key = (st.st_dev, st.st_ino)
        seen = self.files.get(key)
        if seen is None:
            self.files[key] = (real, st)
        elif seen[0] != real or os.path.islink(path):
            first = min(seen[0], real)
            self.files[key] = (first, st)
            self.skip(path, SAME_FILE, f"the same file as {first}, listed once")


def discover_shards(patterns: list[str], lang: str) -> Discovery:
    """Find the shards of ``lang`` under the configured source patterns (see the module's rules).

    Raises :class:`SourceError` for a pattern that cannot be used (see :func:`source_plans`).
    """
    plans = source_plans(patterns)
    walk = _Walk([root for _, root, _ in plans])
    for _, root, rest in plans:
        parts = [part.replace("{lang}", lang) for part in rest]
        walk.enter(root, os.path.realpath(root), os.stat(root), parts, os.path.realpath(root))
    keys = shard_keys([root for _, root, _ in plans], [real for real, _ in walk.files.values()])
    shards = [Shard(real, st.st_size, st.st_mtime_ns, keys[real]) for real, st in walk.files.values()]
    skipped = sorted(set(walk.skipped), key=lambda s: (s.path, s.reason))
    return Discovery(sorted(shards, key=lambda s: s.path), skipped)


def shard_keys(roots: list[str], files: list[str]) -> dict[str, str]:
    """The key of each resolved file path: ``<source folder's name>/<path below it>``.

    A file belongs to the first root (in the order configured) that holds it. The key does not depend on where
    the source folder is mounted, only on its name and layout, so a moved folder (``mv``, a new mount point, a
    pattern pointing at the new place) keeps every shard's identity. Two different roots with the same name are
    told apart by their position among the configured source folders (``name#2`` for the second): reordering
    such patterns reads them again.
    """
    reals, names = [], []
    for root in roots:
        real = os.path.realpath(root)
        if real in reals:  # two patterns over one folder (say *.jsonl and *.parquet): one source
            continue
        reals.append(real)
        names.append(os.path.basename(real.rstrip(os.sep)) or "root")
    unique = [name if names.count(name) == 1 else f"{name}#{i + 1}" for i, name in enumerate(names)]
    keys = {}
    for path in files:
        for real, name in zip(reals, unique):
            if path.startswith(real.rstrip(os.sep) + os.sep):
                keys[path] = f"{name}/{Path(os.path.relpath(path, real)).as_posix()}"
                break
        else:  # discovery lists files inside the roots only; keep the path rather than fail
            keys[path] = path
    return keys
