"""mmsearch.threads.torch_threads, and the recipes' thread counts applying to their run only."""
from __future__ import annotations

import pytest
import torch

from mmsearch.threads import torch_threads


def test_the_count_holds_inside_and_the_callers_comes_back_even_after_an_error():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"):
        with torch_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_none_leaves_the_count_but_undoes_changes_made_inside():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(None):
        assert torch.get_num_threads() == before
        torch.set_num_threads(other)  # e.g. a recipe run inside the block
    assert torch.get_num_threads() == before


def test_a_count_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1, got 0"):
        with torch_threads(0):
            pass
