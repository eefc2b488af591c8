"""The selection rule every recipe shares: which epoch is a run's best so far."""
from __future__ import annotations

import math


def is_new_best(value: float, best: float) -> bool:
    """Whether a maximised validation ``value`` becomes the best (``best`` NaN or -inf: none yet).
    Of equal scores the later epoch wins, as the experiment summary (``orchestration.summary.best_of``)
    and Ray's checkpoint retention choose, so a recipe's best epoch is the one whose checkpoint is kept."""
    return not math.isnan(value) and (math.isnan(best) or value >= best)


__all__ = ["is_new_best"]
