"""Which process runs a run, and whether it is still alive: a lock file held for the run's life.

The process that starts a run claims it: it creates ``<folder>/<run_id>.owner``, takes an exclusive ``flock``
on it and keeps the file open until the run ends. The kernel releases the lock when the process dies, however
it dies (SIGKILL, out of memory, a power cut of the machine's processes), so later a free lock on a run's file
proves that its process is gone, and a held one proves that it is alive. Unlike a recorded pid this cannot be
fooled by pid reuse or by a process on the same pid after a restart. The file also records who claimed it
(host, pid, the process's start time), for the messages that name it.

The file is created aside, locked, then renamed into place, so a checker never finds it unlocked while its
owner is alive; it is unlinked before the lock is let go when the run ends, so a checker that opened it just
before can tell a finished claim (the file is no longer linked) from a dead owner.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterator

SUFFIX = ".owner"


class OwnerState(Enum):
    """What a run's owner file says about its process."""

    ALIVE = "alive"  # the lock is held: the process that claimed the run still runs
    GONE = "gone"  # the file is there and its lock is free: the process died without ending the run
    NONE = "none"  # no file: the run was not claimed here, or it ended


@dataclass(frozen=True)
class Owner:
    """Who claimed a run (what the owner file records)."""

    run_id: str
    host: str
    pid: int
    process_started: float | None  # seconds since the epoch, when the platform says

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None when it cannot be told."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - informative only
        return None


class RunClaims:
    """The runs this process has claimed in one owner folder (thread-safe)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def path(self, run_id: str) -> Path:
        return owner_path(self.folder, run_id)

    def claim(self, run_id: str) -> None:
        """Claim ``run_id`` for this process (no-op when already claimed here)."""
        with self._lock:
            if run_id in self._fds:
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            staged = self.folder / f".{run_id}.{os.getpid()}.{threading.get_ident()}.tmp"
            fd = os.open(staged, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                pid = os.getpid()
                record = {"run_id": run_id, "host": socket.gethostname(), "pid": pid,
                          "process_started": process_start_time(pid)}
                os.write(fd, json.dumps(record).encode("utf-8"))
                os.fsync(fd)
                os.replace(staged, self.path(run_id))
            except BaseException:
                os.close(fd)
                staged.unlink(missing_ok=True)
                raise
            self._fds[run_id] = fd

    def release(self, run_id: str) -> None:
        """End this process's claim on ``run_id``: the file goes, then the lock (no-op if not claimed here)."""
        with self._lock:
            fd = self._fds.pop(run_id, None)
            if fd is None:
                return
            try:
                self.path(run_id).unlink(missing_ok=True)
            finally:
                os.close(fd)  # releases the lock

    def release_all(self) -> None:
        for run_id in list(self._fds):
            self.release(run_id)

    @property
    def claimed(self) -> list[str]:
        with self._lock:
            return list(self._fds)


def owner_path(folder: Path, run_id: str) -> Path:
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise ValueError(f"not a run id: {run_id!r}")
    return folder / f"{run_id}{SUFFIX}"


def read_owner(path: Path) -> Owner | None:
    """The claim recorded in an owner file (None when unreadable)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return Owner(str(record["run_id"]), str(record["host"]), int(record["pid"]), record.get("process_started"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _Probe:
    """An owner file opened by a checker, with its lock taken when the owner is gone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> OwnerState:
        try:
            self.fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return OwnerState.NONE
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return OwnerState.ALIVE
        # Locked by us now. Unlinked meanwhile: its owner ended the claim the normal way.
        try:
            same = os.stat(self.path).st_ino == os.fstat(self.fd).st_ino
        except FileNotFoundError:
            same = False
        return OwnerState.GONE if same else OwnerState.NONE

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)


def probe(folder: Path, run_id: str) -> _Probe:
    """Open ``run_id``'s owner file; entering gives its :class:`OwnerState`. While a GONE probe is open, its
    lock is held by the caller, so nothing else acts on the same dead run at the same time."""
    return _Probe(owner_path(folder, run_id))


def owner_state(folder: Path, run_id: str) -> OwnerState:
    """The state of ``run_id``'s owner, as of now."""
    with probe(folder, run_id) as state:
        return state


def claimed_runs(folder: Path) -> Iterator[str]:
    """The run ids that have an owner file in ``folder`` (claims alive or left by dead processes)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        if not path.name.startswith("."):
            yield path.name[: -len(SUFFIX)]


def remove_dead_claim(folder: Path, run_id: str) -> None:
    """Delete the owner file of a run whose owner is gone (call while its probe is held)."""
    owner_path(folder, run_id).unlink(missing_ok=True)
