"""A stopped job stops the way Ctrl+C does: Tune saves the experiment state one last time.

``ray job stop`` sends the driver SIGTERM (``RAY_JOB_STOP_SIGNAL``, then SIGKILL after
``RAY_JOB_STOP_WAIT_TIME_S``, 3 s by default), and so do Kubernetes and most schedulers. Tune
ends a run gracefully only on SIGINT or SIGUSR1: on SIGTERM the driver died at once, and the
saved experiment state was the last periodic one (every 10 s or more). A trial started after
that save was unknown to the resumed experiment, which suggested its configuration again as a
new trial in a new directory, leaving the first attempt's directory behind (seen in the
two-node cluster test as four trials in five directories). While a Tune run is in progress
:func:`sigterm_stops_tune` turns SIGTERM into Tune's own stop signal.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

# Tune's stop signal besides SIGINT (ray.tune.tune._setup_signal_catching); it is not a
# keyboard interrupt, so nothing else in the driver reacts to it.
TUNE_STOP_SIGNAL = signal.SIGUSR1


def _forward_to_tune(signum: int, frame: object) -> None:
    signal.raise_signal(TUNE_STOP_SIGNAL)


@contextlib.contextmanager
def sigterm_stops_tune() -> Iterator[None]:
    """Within the block, SIGTERM asks Tune to stop (its state saved); the previous handler after.

    Signal handlers belong to the main thread: called from another thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _forward_to_tune)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["TUNE_STOP_SIGNAL", "sigterm_stops_tune"]
