"""Quiet by default: a job prints its plan, progress lines for long stages, Tune's trial table every
30 s (and a line when a trial starts or ends), and its summary; ``--verbose`` brings back Ray's own logs.

What is silenced, with Ray's own knobs, in the driver and (through the job's
``worker_process_setup_hook``) in every Ray worker of the job:

* Ray Train's ``Checkpoint successfully created at: ...`` line per checkpoint (an INFO record of
  the ``ray.train`` storage loggers; raised to WARNING), and Ray Data's notes about its progress
  display (``QUIET_LOGGERS``);
* the Hugging Face loading bars (``Loading weights: 100%|...``, once per encoder actor):
  ``HF_HUB_DISABLE_PROGRESS_BARS``, and transformers' own switch where it is already imported;
* Ray Train's own INFO lines in a derived training (``Requesting resources``, ``Started training
  worker group``, ``Checkpoint successfully created`` per epoch): Ray Train configures its loggers
  itself when its controller and workers start, which resets levels set earlier, so the job passes
  ``RunConfig(logging_config=LoggingConfig(log_level=...))``, its own knob (:func:`train_log_level`);
  its ``Reporting training result`` per epoch comes from a logger named after its file
  (``FILE_NAMED_LOGGERS``);
* Ray Data's ``Starting execution`` / ``Execution plan`` lines (``DataContext.print_on_execution_start``,
  set in the driver and on the contexts mmsearch's Ray Data readers create in the trials),
  and its progress when written as log blocks (stdout not a terminal; its bars in a terminal stay,
  since turning them off makes Ray Data log a warning instead). The precompute stages log their
  own progress lines with rate and ETA every few seconds (:mod:`mmsearch.progress`).

matplotlib's ``generated new fontManager`` (once on a machine without its cache) goes too.
Warnings and errors are never silenced, except Ray Data's warning that its progress bars are off
and Ray's deprecation warnings about its own internal calls (``RAY_INTERNAL_WARNINGS``).
:func:`set_verbose` runs before Ray starts (the choice travels in ``MMSEARCH_VERBOSE``, forwarded
to the workers); this module imports Ray only inside :func:`quiet_process`.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any, MutableMapping

VERBOSE_ENV = "MMSEARCH_VERBOSE"
WORKER_HOOK = "mmsearch.orchestration.quiet.quiet_loggers"
# Loggers of routine records, and the level they are raised to: one INFO line per checkpoint (Ray
# Train v1 storage, used by Tune; and v2); Ray Data's progress display (its progress as 8-line log
# blocks when stdout is not a terminal, and the one-off warning "Progress bars disabled" in every
# trial that turns its per-epoch bars off, as jobs.trials.fusemix_trial does).
QUIET_LOGGERS = {
    "ray.train._internal.storage": logging.WARNING,
    "ray.train.v2._internal.execution.storage": logging.WARNING,
    "ray.data._internal.progress": logging.ERROR,
    # "Dataset ... execution finished in N seconds" after every read (and the start lines of
    # datasets whose context mmsearch did not create); its warnings stay.
    "ray.data._internal.execution.streaming_executor": logging.WARNING,
    # "<dataset> registers for logging while another dataset <dataset> is also logging ..." in a
    # search trial, whose weights and architecture passes each iterate a Ray Data dataset at once
    # (streamed regions), several times per epoch; its warnings stay.
    "ray.data._internal.logging": logging.WARNING,
    # matplotlib's "generated new fontManager", once on a machine without its cache, while the job
    # draws its report (the job logs its own progress at INFO, so third-party INFO shows too).
    "matplotlib.font_manager": logging.WARNING,
    # Tune's "Wrote the latest version of all result files and experiment state to ..." after the
    # final table, between it and the job's summary (the driver's; its warnings stay).
    "ray.tune.tune": logging.WARNING,
}
# Ray modules whose logger is named after the file (``logging.getLogger(__file__)``), so neither
# ray.train's level nor its LoggingConfig reaches it: "Reporting training result N:
# TrainingReport(...)" once per epoch from every Ray Train worker. Paths inside the ray package.
FILE_NAMED_LOGGERS = {"train/v2/_internal/execution/context.py": logging.WARNING}
# Ray's deprecation warnings about what Ray's own code calls (nothing the job passes or can change):
# Ray Train's dataset manager sets ExecutionOptions.exclude_resources, once per derived training.
RAY_INTERNAL_WARNINGS = (r"`ExecutionOptions\.exclude_resources` is deprecated",)


def set_verbose(verbose: bool, environ: MutableMapping[str, str] = os.environ) -> None:
    """Record the job's choice (``--verbose``) before Ray starts."""
    environ[VERBOSE_ENV] = "1" if verbose else "0"


def is_verbose(environ: MutableMapping[str, str] = os.environ) -> bool:
    return environ.get(VERBOSE_ENV, "0") == "1"


def is_quiet(environ: MutableMapping[str, str] = os.environ) -> bool:
    """True where a job asked for quiet output (set in the driver, forwarded to the workers);
    library use outside a job keeps Ray's own defaults."""
    return environ.get(VERBOSE_ENV) == "0"


def runtime_env_hook(environ: MutableMapping[str, str] = os.environ) -> dict[str, Any]:
    """The ``runtime_env`` entries that quiet the job's workers (none with ``--verbose`` or outside a job)."""
    return {"worker_process_setup_hook": WORKER_HOOK} if is_quiet(environ) else {}


def quiet_loggers() -> None:
    """Raise Ray's routine INFO loggers to WARNING in this process and turn off the Hugging Face
    loading bars (every worker runs this first, as the job's ``worker_process_setup_hook``:
    standard library only, nothing is imported)."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    ray = sys.modules.get("ray")  # imported in every Ray worker; a driver that has not imported it has no such records
    if ray is not None and getattr(ray, "__file__", None):
        for path, level in FILE_NAMED_LOGGERS.items():
            logging.getLogger(os.path.join(os.path.dirname(ray.__file__), *path.split("/"))).setLevel(level)
    for message in RAY_INTERNAL_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    quiet_progress_bars()


def quiet_progress_bars(environ: MutableMapping[str, str] = os.environ) -> None:
    """No ``Loading weights`` bars: huggingface_hub's switch (read when transformers is imported)
    and, where transformers is imported already, its own."""
    environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def train_log_level(environ: MutableMapping[str, str] = os.environ) -> str:
    """Ray Train's console level for its own ``ray.train`` records: WARNING in a quiet job (its
    warnings and errors stay), Ray's default INFO otherwise."""
    return "WARNING" if is_quiet(environ) else "INFO"


def quiet_data_context(context: Any) -> Any:
    """``context`` (a Ray Data ``DataContext``) without the execution-plan lines, in a quiet job."""
    if is_quiet():
        context.print_on_execution_start = False
    return context


def quiet_process() -> None:
    """The driver of a quiet job: :func:`quiet_loggers` and the current Ray Data context."""
    quiet_loggers()
    from ray.data import DataContext

    quiet_data_context(DataContext.get_current())


__all__ = ["QUIET_LOGGERS", "VERBOSE_ENV", "is_quiet", "is_verbose", "quiet_data_context", "quiet_loggers", "quiet_process",
           "quiet_progress_bars",
           "runtime_env_hook", "set_verbose", "train_log_level"]
