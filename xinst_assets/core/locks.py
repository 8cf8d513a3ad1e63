"""Advisory file locks between processes (``flock``), re-entrant within a thread.

An ``flock`` belongs to an open file description: the kernel releases it when the process that holds it dies,
however it dies (SIGKILL included), so a lock can never outlive its holder. A second acquisition from the same
process through a new descriptor would wait for itself; this module tracks what each thread holds and lets a
nested acquisition of the same file pass through.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

# What this thread holds: lock path -> (mode, depth).
_held = threading.local()

# How often a waiter that may wait long (``timeout_s=None``) is told it is still waiting.
WAIT_NOTICE_S = 30.0


class LockTimeout(TimeoutError):
    """A lock could not be taken within the allowed time."""


@contextlib.contextmanager
def file_lock(
    lock_path: Path,
    exclusive: bool,
    timeout_s: float | None,
    *,
    what: str = "lock",
    on_wait: Callable[[float], None] | None = None,
    error: type[LockTimeout] = LockTimeout,
) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``lock_path`` (exclusive or shared).

    Waits up to ``timeout_s`` seconds (``None``: as long as it takes) and then raises ``error`` naming
    ``what``. ``on_wait(waited_s)`` is called when the wait starts and every :data:`WAIT_NOTICE_S` after.
    """
    key = str(lock_path)
    held = getattr(_held, "locks", None)
    if held is None:
        held = _held.locks = {}
    if key in held:
        mode, depth = held[key]
        if exclusive and mode != "ex":
            raise RuntimeError(f"cannot upgrade a shared {what} to exclusive; take it exclusively first")
        held[key] = (mode, depth + 1)
        try:
            yield
        finally:
            held[key] = (mode, held[key][1] - 1)
            if held[key][1] == 0:
                del held[key]
        return

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        flag = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        started = time.monotonic()
        delay, next_notice = 0.01, 0.0
        while True:
            try:
                fcntl.flock(fd, flag | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if timeout_s is not None and waited >= timeout_s:
                    raise error(f"waited {timeout_s:.0f}s for the {what} {lock_path}; another process holds it") from None
                if on_wait is not None and waited >= next_notice:
                    on_wait(waited)
                    next_notice = waited + WAIT_NOTICE_S
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        held[key] = ("ex" if exclusive else "sh", 1)
        try:
            yield
        finally:
            del held[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holds(lock_path: Path) -> bool:
    """Whether this thread holds ``lock_path`` (through :func:`file_lock`)."""
    return str(lock_path) in (getattr(_held, "locks", None) or {})
