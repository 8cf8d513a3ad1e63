"""Named places where a test can stop a run and know exactly where it stands; inert unless ``XINST_PAUSE_AT``
is set.

Some guarantees are about a process that dies at one precise place: a run killed inside a warehouse write
transaction, before its commit, must leave the tables as they were. Sleeping and then killing cannot test that
(a fast machine is already past the place, a loaded one not there yet), so the code marks a few places with
:func:`pause_point`, and a test starts the real run with

    XINST_PAUSE_AT="raw_web_text: before commit"    (the name of one point, as passed to pause_point)
    XINST_PAUSE_DIR=<a folder of the test's>

The process that reaches the named point writes ``<folder>/reached`` (the point and its pid), then waits until
``<folder>/release`` exists; the test kills it there, or lets it go on by creating that file. Nothing is replaced
or mocked: the code before and after the point is the real code. Without ``XINST_PAUSE_AT`` (every real run),
a point costs one environment lookup. The points are listed in :data:`POINTS`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

PAUSE_AT_ENV = "XINST_PAUSE_AT"
PAUSE_DIR_ENV = "XINST_PAUSE_DIR"
REACHED_FILE = "reached"
RELEASE_FILE = "release"

# Every point in the code, with where it is. A name set in XINST_PAUSE_AT that is not here never pauses.
POINTS = {
    "raw_web_text: before commit":
        "inside a language's write transaction, its new shards inserted and its removed ones deleted",
    "document_signals: screened, before writing":
        "the signals computed and staged in scratch files; no warehouse transaction open",
    "document_signals: before commit":
        "inside a language's write transaction, its new signals inserted",
}

_log = logging.getLogger("xinst.pause_points")


def pause_point(name: str) -> None:
    """Stop here while ``$XINST_PAUSE_AT`` names this point (see the module docstring); otherwise do nothing."""
    if os.environ.get(PAUSE_AT_ENV) != name:
        return
    folder = os.environ.get(PAUSE_DIR_ENV)
    if not folder:
        raise RuntimeError(f"{PAUSE_AT_ENV} is set to {name!r} but {PAUSE_DIR_ENV} names no folder")
    folder_path = Path(folder)
    folder_path.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: whoever waits for the file reads it whole.
    staged = folder_path / f".{REACHED_FILE}.{os.getpid()}"
    staged.write_text(json.dumps({"point": name, "pid": os.getpid()}), encoding="utf-8")
    os.replace(staged, folder_path / REACHED_FILE)
    release = folder_path / RELEASE_FILE
    _log.warning("paused at %r (%s is set) until %s exists", name, PAUSE_AT_ENV, release)
    while not release.exists():
        time.sleep(0.05)
