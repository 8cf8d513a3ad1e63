"""The dbt project (dbt-duckdb) that holds xinst's plain-SQL transforms."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from xinst_assets.resources.warehouse import file_lock
from xinst_assets.settings import DBT_PROJECT_DIR


def dbt_project() -> DbtProject:
    """The project, with its manifest prepared (``dbt parse``) if it is missing.

    `dagster dev` prepares it on every load; elsewhere (tests, the demo, a fresh deployment) it is parsed once.
    Concurrent processes that load the definitions at the same time parse under a lock, one after another.
    """
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    _put_python_bin_on_path()
    project.prepare_if_dev()
    if _manifest_is_stale(project):
        with file_lock(DBT_PROJECT_DIR / "target" / ".prepare.lock", exclusive=True, timeout_s=300):
            if _manifest_is_stale(project):
                project.preparer.prepare(project)
    return project


def _manifest_is_stale(project: DbtProject) -> bool:
    """Missing, or older than a file of the dbt project (a model edited since the last parse)."""
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [p for folder in ("models", "macros", "tests") for p in (DBT_PROJECT_DIR / folder).rglob("*")]
    sources += [DBT_PROJECT_DIR / "dbt_project.yml", DBT_PROJECT_DIR / "profiles.yml"]
    return any(p.is_file() and p.stat().st_mtime > built for p in sources)


def _put_python_bin_on_path() -> None:
    """dagster-dbt's preparer looks for ``dbt`` on PATH: make it this environment's dbt, even when the
    environment was not activated (``.venv/bin/dagster dev``)."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def dbt_resource(project: DbtProject) -> DbtCliResource:
    """A dbt CLI resource that runs the dbt executable of this Python environment."""
    executable = Path(sys.executable).with_name("dbt")
    return DbtCliResource(
        project_dir=project,
        dbt_executable=str(executable) if executable.exists() else "dbt",
    )
