"""Processes a test starts and waits for, without betting on the machine's speed.

Tests run on loaded machines (CI, a shared 2-core box), where a command that takes a minute on an idle machine
can take ten. So a wait here ends on the process's own state (it exited, it wrote the file it promised), never
on a clock. A test's only time limit is pytest-timeout's (``timeout`` in pyproject.toml, or the test's own
``timeout`` mark), which stands for a hang: when it stops a test that waits here, the processes are killed and
the tail of their output is printed (pytest shows it in the failure's report), so a hang says where it was.

Output goes to temporary files, not pipes: a process whose pipe nobody reads while the test waits on another
process would block when the pipe fills, possibly holding a lock the other one waits for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Sequence

TAIL_CHARS = 4000
POLL_S = 0.05


class Started:
    """A process started by :func:`start`; its stdout and stderr go to temporary files."""

    def __init__(self, args: Sequence[str], popen: subprocess.Popen, out: IO[bytes], err: IO[bytes] | None,
                 group: bool) -> None:
        self.args = list(args)
        self.popen = popen
        self._out, self._err, self._group = out, err, group

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def output(self) -> tuple[str, str]:
        """(stdout, stderr) so far; stderr is empty when it was sent to stdout."""
        return _read(self._out), _read(self._err) if self._err is not None else ""

    def tail(self, chars: int = TAIL_CHARS) -> str:
        out, err = self.output()
        return (out[-chars:] + ("\n--- stderr ---\n" + err[-chars:] if err else "")).strip()

    def kill(self) -> None:
        """SIGKILL the process (its whole group when it was started in a session of its own)."""
        if self.popen.poll() is not None and not self._group:
            return
        try:
            if self._group:
                os.killpg(self.popen.pid, signal.SIGKILL)
            else:
                self.popen.kill()
        except ProcessLookupError:
            pass
        self.popen.wait()

    def result(self) -> subprocess.CompletedProcess:
        out, err = self.output()
        return subprocess.CompletedProcess(self.args, self.popen.returncode, out, err)

    def close(self) -> None:
        for handle in (self._out, self._err):
            if handle is not None:
                handle.close()


def _read(handle: IO[bytes]) -> str:
    # pread leaves the file offset alone: the process, which shares it, may still be writing.
    fd = handle.fileno()
    return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", errors="replace")


def start(args: Sequence[str], *, env: dict | None = None, cwd: str | Path | None = None,
          stderr_to_stdout: bool = False, new_session: bool = False) -> Started:
    """Start ``args`` with its output in temporary files (stdin: nothing). ``new_session``: in a process group
    of its own, so :meth:`Started.kill` reaches the processes it starts."""
    out = tempfile.TemporaryFile()
    err = None if stderr_to_stdout else tempfile.TemporaryFile()
    popen = subprocess.Popen([str(a) for a in args], env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT if stderr_to_stdout else err, start_new_session=new_session)
    return Started(args, popen, out, err, new_session)


def finish(*processes: Started) -> list[subprocess.CompletedProcess]:
    """Wait until every process has exited, however long that takes; return their results (output as text).
    If the wait is interrupted (pytest-timeout, Ctrl-C), the processes are killed and their output's tail is
    printed before the interruption goes on."""
    try:
        for process in processes:
            process.popen.wait()
        return [process.result() for process in processes]
    except BaseException:
        for process in processes:
            if process.poll() is None:
                process.kill()
                print(f"--- {' '.join(process.args)[:300]} (killed: the test was stopped while it ran) ---\n"
                      f"{process.tail()}", file=sys.stderr)
        raise
    finally:
        for process in processes:
            process.close()


def run(args: Sequence[str], *, env: dict | None = None, cwd: str | Path | None = None,
        stderr_to_stdout: bool = False) -> subprocess.CompletedProcess:
    """``subprocess.run(args, capture_output=True, text=True)`` without a time limit of its own (see the module
    docstring)."""
    return finish(start(args, env=env, cwd=cwd, stderr_to_stdout=stderr_to_stdout))[0]


def wait_for_file(path: Path, process: Started | subprocess.Popen, what: str | None = None) -> str:
    """The content of ``path`` once ``process`` has written it (non-empty); fails as soon as the process ends
    without writing it. No time limit of its own."""
    popen = process.popen if isinstance(process, Started) else process
    while True:
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if text:
                return text
        if popen.poll() is not None:
            tail = process.tail() if isinstance(process, Started) else ""
            raise AssertionError(f"the process ended (exit {popen.returncode}) before writing "
                                 f"{what or path.name}\n{tail}")
        time.sleep(POLL_S)
