"""A private per-user cache folder for things each process would otherwise compute again at start-up."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_cache_dir(name: str, override_env: str | None = None) -> Path | None:
    """``$XDG_CACHE_HOME/xinst/<name>`` (or the folder named by ``override_env``), created private to the
    user; None when it cannot be created, or belongs to someone else, or others may write to it: what it
    holds is loaded as code or as data the pipeline trusts, so a folder others could change is not used."""
    configured = os.environ.get(override_env) if override_env else None
    base = Path(configured) if configured else Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xinst" / name
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = base.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return base
