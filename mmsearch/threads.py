"""torch's intra-op thread count for one block of work, the caller's given back after.

Recipes, benchmark cells and tests run in processes that go on afterwards (a Tune actor reused by
the next trial, a test session, a pool worker): a thread count set for one run must not leak into
the next, since kernels on another thread count also round differently.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Inside the block torch uses ``count`` intra-op threads (``None``: as it is); after it, even
    after an exception, the count it had before."""
    if count is not None and count < 1:
        raise ValueError(f"a thread count must be at least 1, got {count}")
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:  # also undoes a change made inside the block
            torch.set_num_threads(before)


__all__ = ["torch_threads"]
