"""``python -m mmsearch.report EXPERIMENT_DIR_OR_URI [--out DIR]``: rebuild an experiment's report.

Works on a finished or a running experiment, local or ``s3://`` (the endpoint of an
S3-compatible store from ``--s3-endpoint-url`` or ``AWS_ENDPOINT_URL``; credentials from the
standard AWS chain). Prints where ``report.html`` went. Exit status 2 when the location holds no
experiment, or cannot be read.
"""
from __future__ import annotations

import argparse
import logging
import sys

from mmsearch.orchestration.storage import StorageError
from mmsearch.report.build import REPORT_DIR, build_report
from mmsearch.report.collect import ReportError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mmsearch.report",
        description="Rebuild the plots and the static HTML report of a (finished or running) experiment.",
    )
    p.add_argument("experiment", help="experiment directory (local/NFS path or s3://bucket/prefix/name)")
    p.add_argument("--out", default=None, help=f"where to write the report (default: EXPERIMENT/{REPORT_DIR})")
    p.add_argument("--s3-endpoint-url", default=None, help="S3-compatible endpoint, e.g. http://127.0.0.1:9000")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        page = build_report(args.experiment, args.out, endpoint_url=args.s3_endpoint_url)
    except (ReportError, StorageError, OSError) as exc:
        print(f"mmsearch report: {exc}", file=sys.stderr)
        return 2
    print(f"Report: {page}")
    return 0


__all__ = ["main", "parser"]
