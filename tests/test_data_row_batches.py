"""row_batches: how the in-memory TaskData implementations order and cut a part's rows."""
from __future__ import annotations

import numpy as np
import pytest

from mmsearch.data.task_data import row_batches


def test_rows_in_order_cut_with_or_without_the_short_tail():
    rows = np.arange(10, 20)
    assert [b.tolist() for b in row_batches(rows, 4, None, False)] == [[10, 11, 12, 13], [14, 15, 16, 17], [18, 19]]
    assert [b.tolist() for b in row_batches(rows, 4, None, True)] == [[10, 11, 12, 13], [14, 15, 16, 17]]
    assert list(row_batches(rows[:3], 4, None, True)) == []


def test_a_seed_permutes_all_rows_reproducibly():
    rows = np.arange(50)
    first = np.concatenate(list(row_batches(rows, 7, [3, 1, 0], False)))
    assert sorted(first.tolist()) == rows.tolist() and first.tolist() != rows.tolist()
    assert np.array_equal(first, rows[np.random.default_rng([3, 1, 0]).permutation(50)])
    assert np.array_equal(first, np.concatenate(list(row_batches(rows, 3, [3, 1, 0], False))))
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        next(row_batches(rows, 0, None, False))
