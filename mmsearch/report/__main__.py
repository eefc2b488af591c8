"""``python -m mmsearch.report``: see :mod:`mmsearch.report.cli`."""
import sys

from mmsearch.report.cli import main

sys.exit(main())
