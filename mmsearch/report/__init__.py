"""Experiment reports: PNG figures and one static HTML page, rebuilt from storage at any time.

    from mmsearch.report import build_report
    build_report("~/mmsearch_results/search_vqa")           # -> .../search_vqa/report/report.html
    build_report("s3://bucket/experiments/search_vqa", out="/tmp/report")

or ``python -m mmsearch.report EXPERIMENT_DIR_OR_URI [--out DIR]``. Modules: ``collect`` (read
an experiment directory, no Ray), ``plots_curves`` / ``plots_arch`` (figures), ``html`` (the
page), ``build`` (all of it, written atomically), ``cli`` (the command).
"""
from mmsearch.report.build import build_report
from mmsearch.report.collect import ExperimentData, ReportError, TrialData, collect_experiment

__all__ = ["ExperimentData", "ReportError", "TrialData", "build_report", "collect_experiment"]
