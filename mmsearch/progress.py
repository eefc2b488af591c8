"""Progress lines for long stages: one line every few seconds with the count, the rate and the ETA.

    progress = Progress("image stage", total=1000, unit="images", log=log)
    for batch in batches:
        ...
        progress.advance(len(batch))      # logs at most every ``every_s`` seconds, and at the end

A line reads ``image stage: 340/1000 images (34%), 57.1 images/s, ETA 12 s``. Plain logging (no
terminal control codes), so it reads the same in a terminal, a file and a Ray job's log.

The rate and ETA count from the first batch on: a stage whose first batch waits for its workers
to start and load an encoder would otherwise promise minutes where seconds remain. A line
logged at the first batch says how long that took instead (``32/300 rows (11%), first rows after
20 s``); the final line gives the whole stage's time and mean rate.
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


def _count(value: float) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


class Progress:
    """Counts work done and logs a line at most every ``every_s`` seconds, and one when done."""

    def __init__(self, label: str, total: float, unit: str = "rows", *, log: logging.Logger, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.unit, self.log, self.every_s, self.clock = label, total, unit, log, every_s, clock
        self.done = 0
        self.started = self.last = clock()
        self.first: tuple[float, int] | None = None  # (time, count) at the first advance

    def line(self) -> str:
        now = self.clock()
        elapsed = max(now - self.started, 1e-9)
        text = f"{self.label}: {_count(self.done)}/{_count(self.total)} {self.unit}"  # floats (MB) to one decimal
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        if self.done >= self.total:
            return text + f", {self.done / elapsed:.1f} {self.unit}/s, done in {_duration(elapsed)}"
        if self.first is None or self.done == self.first[1]:  # only the first batch: no rate to speak of yet
            return text + f", first {self.unit} after {_duration(elapsed)}"
        rate = (self.done - self.first[1]) / max(now - self.first[0], 1e-9)
        return text + f", {rate:.1f} {self.unit}/s, ETA {_duration((self.total - self.done) / rate)}"

    def advance(self, n: float) -> None:
        self.done += n
        now = self.clock()
        if self.first is None:
            self.first = (now, self.done)
        if self.done >= self.total or now - self.last >= self.every_s:
            self.last = now
            self.log.info("%s", self.line())


__all__ = ["Progress"]
