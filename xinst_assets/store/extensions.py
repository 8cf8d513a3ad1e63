"""DuckDB extensions loaded offline from their pip wheels, never downloaded.

DuckDB extensions ship on PyPI as ``duckdb-extension-<name>`` wheels, each holding one file built for one
DuckDB release (``<package>/extensions/v<version>/<name>.duckdb_extension``). DuckDB itself looks for
extensions by name in ``<extension_directory>/v<version>/<platform>/<name>.duckdb_extension`` and, when one is
missing, downloads it. :func:`extension_directory` lays the wheels' files out in that shape (symlinks), and
:func:`connection_config` gives the settings that make DuckDB use that folder and never download: then
``LOAD ducklake``, and the automatic loading that ``ATTACH 'ducklake:...'`` or an ``s3://`` path trigger, work
offline, in our own connections and in dbt-duckdb's (``config_options`` of the profile).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Iterable

import duckdb

from xinst_assets.core.user_cache import private_cache_dir

# The extensions the lakehouse backend needs: DuckLake itself, the Postgres client of its catalog, and httpfs
# for data paths on S3-compatible storage. Their wheels are dependencies of xinst, pinned with duckdb.
LAKEHOUSE_EXTENSIONS = ("ducklake", "postgres_scanner", "httpfs")
DIRECTORY_ENV = "XINST_DUCKDB_EXTENSIONS"  # where the layout goes (default: a private per-user cache folder)


class ExtensionNotInstalled(RuntimeError):
    """An extension's wheel is missing, or was built for another DuckDB release."""


def duckdb_version() -> str:
    """The running DuckDB's release as its extension folders name it (``v1.5.5``)."""
    return duckdb.__version__ if duckdb.__version__.startswith("v") else f"v{duckdb.__version__}"


def duckdb_platform() -> str:
    """The platform DuckDB was built for, as its extension folders name it (``linux_amd64``)."""
    with duckdb.connect() as con:
        return str(con.execute("PRAGMA platform").fetchone()[0])


def wheel_extension_file(name: str) -> Path:
    """The extension file that the ``duckdb-extension-<name>`` wheel installed for this DuckDB release."""
    package = "duckdb_extension_" + name
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionNotInstalled(
            f"the DuckDB extension {name!r} is not installed: pip install "
            f"'duckdb-extension-{name.replace('_', '-')}=={duckdb_version()[1:]}'")
    folder = Path(next(iter(spec.submodule_search_locations))) / "extensions"
    path = folder / duckdb_version() / f"{name}.duckdb_extension"
    if not path.is_file():
        built_for = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise ExtensionNotInstalled(
            f"the installed duckdb-extension-{name.replace('_', '-')} is built for DuckDB {built_for or '?'}, "
            f"not for the running DuckDB {duckdb_version()}: install the matching release of both")
    return path


def extension_directory(root: Path | str | None = None, names: Iterable[str] = LAKEHOUSE_EXTENSIONS) -> Path:
    """Lay out the wheels' extension files under ``root`` as DuckDB looks them up, and return ``root``.

    ``root`` defaults to ``$XINST_DUCKDB_EXTENSIONS`` or a private per-user cache folder (the files are code
    that DuckDB loads: a folder others may write to is not used). Each entry is a symlink to this Python
    environment's wheel, replaced atomically when it points elsewhere (another environment), so concurrent
    processes may call this at once. Raises :class:`ExtensionNotInstalled` for a missing wheel.
    """
    if root is None:
        root = private_cache_dir("duckdb-extensions", DIRECTORY_ENV) or Path(
            tempfile.mkdtemp(prefix="xinst-duckdb-extensions-"))
    root = Path(root).expanduser()
    target_dir = root / duckdb_version() / duckdb_platform()
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = wheel_extension_file(name)
        link = target_dir / f"{name}.duckdb_extension"
        if link.is_symlink() and os.readlink(link) == str(source):
            continue
        partial = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        partial.unlink(missing_ok=True)
        partial.symlink_to(source)
        os.replace(partial, link)
    return root


def connection_config(directory: Path | str) -> dict[str, object]:
    """DuckDB settings for a connection that loads extensions from ``directory`` only: given at connect time
    (``duckdb.connect(config=...)``, dbt-duckdb's ``config_options``), before any ATTACH needs them."""
    return {
        "extension_directory": str(directory),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
    }
