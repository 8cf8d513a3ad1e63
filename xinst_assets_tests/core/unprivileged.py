"""Running a function as an unprivileged user, so that permission tests mean something when tests run as root
(root reads a file whatever its mode)."""

from __future__ import annotations

import atexit
import multiprocessing
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

NOBODY = 65534


def _child(fn: Callable[[], Any], out: str) -> None:
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    result = fn()
    with open(out, "wb") as handle:
        pickle.dump(result, handle)


def run_unprivileged(fn: Callable[[], Any]) -> Any:
    """``fn()``'s result, computed in a forked child that gave up root first (or here, when not root)."""
    if os.geteuid() != 0:
        return fn()
    out = shared_folder() / "result.pickle"
    process = multiprocessing.get_context("fork").Process(target=_child, args=(fn, str(out)))
    process.start()
    process.join()
    assert process.exitcode == 0, f"the unprivileged child failed (exit code {process.exitcode})"
    with open(out, "rb") as handle:
        return pickle.load(handle)


def shared_folder() -> Path:
    """A fresh folder every user can enter and write (the child writes its outputs there), removed at exit
    (outside pytest's own temporary folders, which only their owner may enter)."""
    folder = Path(tempfile.mkdtemp(prefix="xinst-test-"))
    os.chmod(folder, 0o777)
    atexit.register(shutil.rmtree, folder, True)
    return folder
