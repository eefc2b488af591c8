"""Progress lines for long stages: one line every few seconds with the count, the rate and the ETA.

    progress = Progress("image stage", total=1000, unit="images", log=log)
    for batch in batches:
        ...
        progress.advance(len(batch))      # logs at most every ``every_s`` seconds, and at the end

A line reads ``image stage: 340/1000 images (34%), 57.1 images/s, ETA 12 s``. Plain logging (no
terminal control codes), so it reads the same in a terminal, a file and a Ray job's log.
"""
from __future__ import annotations

import logging
import time
from typing import Callable


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Counts work done and logs a line at most every ``every_s`` seconds, and one when done."""

    def __init__(self, label: str, total: int, unit: str = "rows", *, log: logging.Logger, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.unit, self.log, self.every_s, self.clock = label, total, unit, log, every_s, clock
        self.done = 0
        self.started = self.last = clock()

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done}/{self.total} {self.unit}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {rate:.1f} {self.unit}/s"
        if self.done >= self.total:
            return text + f", done in {_duration(elapsed)}"
        return text + (f", ETA {_duration((self.total - self.done) / rate)}" if rate > 0 else "")

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if self.done >= self.total or now - self.last >= self.every_s:
            self.last = now
            self.log.info("%s", self.line())


__all__ = ["Progress"]
