"""Progress reporting for long stages: rows done, rate and time left, at a bounded interval."""

from __future__ import annotations

import logging
import time
from typing import Callable

_console = logging.getLogger("xinst.progress")


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes:d}m{secs:02d}s"


class Progress:
    """Call :meth:`advance` as work is done; it logs at most every ``every_s`` seconds (and at the end).

    ``log`` receives each line (pass ``context.log.info`` so the line lands in the Dagster run log); the same
    line also goes to the ``xinst.progress`` logger, which prints on the console.
    """

    def __init__(
        self,
        stage: str,
        total: int | None,
        log: Callable[[str], None] | None = None,
        every_s: float = 15.0,
        unit: str = "rows",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage, self.total, self.unit = stage, total, unit
        self._log, self._every, self._clock = log, every_s, clock
        self.done = 0
        self._start = self._last = clock()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._emit(self.line())

    def line(self) -> str:
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = self.done / elapsed
        text = f"[{self.stage}] {self.done:,}"
        if self.total:
            pct = 100.0 * self.done / self.total
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta = _format_seconds(left) if left != float("inf") else "?"
            text += f"/{self.total:,} {self.unit} ({pct:.1f}%), {rate:,.1f} {self.unit}/s, {eta} left"
        else:
            text += f" {self.unit}, {rate:,.1f} {self.unit}/s"
        return text

    def finish(self) -> str:
        elapsed = max(self._clock() - self._start, 1e-9)
        line = (
            f"[{self.stage}] {self.done:,} {self.unit} done in {_format_seconds(elapsed)} "
            f"({self.done / elapsed:,.1f} {self.unit}/s)"
        )
        self._emit(line)
        return line

    def _emit(self, line: str) -> None:
        _console.info(line)
        if self._log is not None:
            self._log(line)
