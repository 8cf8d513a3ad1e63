"""Pause points: a run stops at the point a test names, says so, and goes on when released; unnamed points, or
no setting at all, do nothing. Every listed point is in the code."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest

from xinst_assets.core import pause_points
from xinst_assets.core.pause_points import (
    PAUSE_AT_ENV,
    PAUSE_DIR_ENV,
    POINTS,
    REACHED_FILE,
    RELEASE_FILE,
    pause_point,
)
from xinst_assets.settings import PROJECT_ROOT

POINT = "raw_web_text: before commit"


def test_a_point_does_nothing_unless_the_setting_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(PAUSE_AT_ENV, raising=False)
    pause_point(POINT)  # returns at once
    monkeypatch.setenv(PAUSE_AT_ENV, "document_signals: before commit")
    monkeypatch.setenv(PAUSE_DIR_ENV, str(tmp_path))
    pause_point(POINT)
    assert list(tmp_path.iterdir()) == []


def test_the_named_point_says_it_was_reached_and_waits_until_released(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(PAUSE_AT_ENV, POINT)
    monkeypatch.setenv(PAUSE_DIR_ENV, str(tmp_path / "pause"))
    after: list[str] = []

    def run() -> None:
        pause_point(POINT)
        after.append("went on")

    thread = threading.Thread(target=run)
    thread.start()
    reached = tmp_path / "pause" / REACHED_FILE
    while not reached.exists():  # the thread's own signal, whatever the machine's speed
        assert thread.is_alive(), "the point returned without pausing"
        thread.join(0.05)
    assert json.loads(reached.read_text(encoding="utf-8")) == {"point": POINT, "pid": os.getpid()}
    assert thread.is_alive() and after == []  # it waits
    (tmp_path / "pause" / RELEASE_FILE).touch()
    thread.join()
    assert after == ["went on"]


def test_a_named_point_without_a_folder_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(PAUSE_AT_ENV, POINT)
    monkeypatch.delenv(PAUSE_DIR_ENV, raising=False)
    with pytest.raises(RuntimeError, match=f"{PAUSE_DIR_ENV} names no folder"):
        pause_point(POINT)


def test_every_listed_point_is_in_the_code_once_and_every_point_in_the_code_is_listed():
    found: list[str] = []
    for path in (PROJECT_ROOT / "xinst_assets").rglob("*.py"):
        if path == Path(pause_points.__file__):
            continue
        found += re.findall(r'pause_point\(\s*"([^"]+)"\s*\)', path.read_text(encoding="utf-8"))
    assert sorted(found) == sorted(POINTS)
