"""mmsearch.data.heap: freed heap pages go back to the OS after a burst of small allocations."""
from __future__ import annotations

import platform
import sys

import pytest

from mmsearch.data.heap import release_free_heap


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_a_freed_burst_of_small_allocations_is_returned():
    # ~200 MiB of small blocks (below glibc's mmap threshold, so they live on the heap), every
    # other one kept for a moment so the heap cannot simply shrink from its top as they go
    blocks = [bytearray(4000) for _ in range(50_000)]
    keep = blocks[::2]
    del blocks
    keep.append(bytearray(4000))  # a live block at the heap's top
    kept = keep[-1]
    del keep
    before = _rss_mib()
    assert release_free_heap() is True
    after = _rss_mib()
    assert before - after > 100, (before, after)  # most of the ~195 MiB freed was resident until now
    del kept


def test_it_is_a_no_op_without_glibc(monkeypatch):
    import mmsearch.data.heap as heap

    monkeypatch.setattr(heap, "_glibc_trim", lambda: None)
    assert heap.release_free_heap() is False
