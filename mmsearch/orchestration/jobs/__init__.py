"""The Ray Tune jobs (searches, FuseMix tuning): one module per part of a job.

- ``run``: a job from its command line to its closing lines (``main``, ``run_job``; the module
  docstring says what a job does and its exit status);
- ``specs``: ``JOBS``, one ``JobSpec`` per job (a registered recipe plus its command-line card);
- ``config``: the job's config file (``recipe:``, ``tune:``, ``dataset:``, ``shortlist:``) and options;
- ``env``: ``RAY_AUTH_MODE`` settled before Ray is imported (no Ray, no torch: entry points import it first);
- ``data``: the data set a job builds or reuses, bound into the recipe config;
- ``trials``: the function a job runs as a Tune trial; ``results``: what a job leaves after its trials;
- ``shortlist``: retrain the searches' best architectures and anchors, keep the winner on val;
- ``handoff``: ``--then-train``, the best architecture trained from scratch with Ray Train.

The names below are imported from their modules on first use, so importing ``jobs.env`` (or this
package) loads neither torch nor Ray.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmsearch.orchestration.jobs.run import (BAD_INPUT_EXIT, JobOutcome, build_parser, force_cpu, main,
                                                 metric_meaning, options_from_args, run_job)
    from mmsearch.orchestration.jobs.specs import JOBS, SEARCH_TASKS, job_spec

_HOME = {  # exported name -> the module of this package that defines it
    **dict.fromkeys(("BAD_INPUT_EXIT", "JobOutcome", "build_parser", "force_cpu", "main", "metric_meaning",
                     "options_from_args", "run_job"), "run"),
    **dict.fromkeys(("JOBS", "SEARCH_TASKS", "job_spec"), "specs"),
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = sorted(_HOME)
