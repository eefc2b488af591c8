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

from mmsearch.cli_parsers import report_parser


def parser(prog: str = "python -m mmsearch.report") -> argparse.ArgumentParser:
    return report_parser(prog)


def main(argv: list[str] | None = None, prog: str = "python -m mmsearch.report") -> int:
    args = parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from mmsearch.storage import StorageError
    from mmsearch.report.build import build_report
    from mmsearch.report.collect import ReportError

    try:
        page = build_report(args.experiment, args.out, endpoint_url=args.s3_endpoint_url)
    except (ReportError, StorageError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    print(f"Report: {page}")
    return 0


__all__ = ["main", "parser"]
