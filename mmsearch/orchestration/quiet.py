"""Quiet by default: a job prints its plan, one line per trial epoch (and Tune's status table every
30 s), progress lines for long stages, and its summary; ``--verbose`` brings back Ray's own logs.

What is silenced, with Ray's own knobs, in the driver and (through the job's
``worker_process_setup_hook``) in every Ray worker of the job:

* Ray Train's ``Checkpoint successfully created at: ...`` line per checkpoint (an INFO record of
  the ``ray.train`` storage loggers; raised to WARNING);
* Ray Data's ``Starting execution`` / ``Execution plan`` lines (``DataContext.print_on_execution_start``),
  and its progress when written as log blocks (stdout not a terminal; its bars in a terminal stay,
  since turning them off makes Ray Data log a warning instead). The precompute stages log their
  own progress lines with rate and ETA every few seconds (:mod:`mmsearch.progress`).

Warnings and errors are never silenced. :func:`set_verbose` runs before Ray starts (the choice
travels in ``MMSEARCH_VERBOSE``); this module imports Ray only inside :func:`quiet_process`.
"""
from __future__ import annotations

import logging
import os
from typing import Any, MutableMapping

VERBOSE_ENV = "MMSEARCH_VERBOSE"
WORKER_HOOK = "mmsearch.orchestration.quiet.quiet_process"
# Loggers whose INFO records are routine: one line per checkpoint (Ray Train v1 storage, used by
# Tune; and v2), and Ray Data's progress written as 8-line log blocks when stdout is not a terminal.
QUIET_LOGGERS = ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage", "ray.data._internal.progress")


def set_verbose(verbose: bool, environ: MutableMapping[str, str] = os.environ) -> None:
    """Record the job's choice (``--verbose``) before Ray starts."""
    environ[VERBOSE_ENV] = "1" if verbose else "0"


def is_verbose(environ: MutableMapping[str, str] = os.environ) -> bool:
    return environ.get(VERBOSE_ENV, "0") == "1"


def runtime_env_hook(environ: MutableMapping[str, str] = os.environ) -> dict[str, Any]:
    """The ``runtime_env`` entries that quiet the job's workers (none with ``--verbose``)."""
    return {} if is_verbose(environ) else {"worker_process_setup_hook": WORKER_HOOK}


def quiet_process() -> None:
    """Silence Ray's routine INFO lines in this process (a driver, or a worker through the setup hook)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    from ray.data import DataContext

    DataContext.get_current().print_on_execution_start = False


__all__ = ["QUIET_LOGGERS", "VERBOSE_ENV", "is_verbose", "quiet_process", "runtime_env_hook", "set_verbose"]
