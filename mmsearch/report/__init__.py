"""Experiment reports: PNG figures and one static HTML page, rebuilt from storage at any time.

    from mmsearch.report import build_report
    build_report("~/mmsearch_results/search_vqa")           # -> .../search_vqa/report/report.html
    build_report("s3://bucket/experiments/search_vqa", out="/tmp/report")

or ``python -m mmsearch.report EXPERIMENT_DIR_OR_URI [--out DIR]``. Modules: ``collect`` (read
an experiment directory, no Ray), ``plots_curves`` / ``plots_arch`` (figures), ``html`` (the
page), ``build`` (all of it, written atomically), ``cli`` (the command).
"""
from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (matplotlib takes seconds), so that ``mmsearch report --help`` is instant.
_EXPORTS = {"build_report": "build", "ExperimentData": "collect", "ReportError": "collect", "TrialData": "collect",
            "collect_experiment": "collect"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"mmsearch.report.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mmsearch.report' has no attribute {name!r}")


__all__ = ["ExperimentData", "ReportError", "TrialData", "build_report", "collect_experiment"]
