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


_HEAP_PROBE = """
import sys
import numpy as np
from mmsearch.data.heap import map_large_allocations

def rss_mib():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "mapped":
    assert map_large_allocations() is True
np.ones(12 * 2**20, np.uint8)  # a batch's buffer, freed: glibc's own threshold rises to its size
before = rss_mib()
in_flight = [np.ones(12 * 2**20, np.uint8) for _ in range(8)]  # buffers of that size, several at once
above = bytearray(64 * 1024)  # a small block that stays, above them in the heap
del in_flight
print(round(rss_mib() - before))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="mallopt(M_MMAP_THRESHOLD) exists only in glibc; elsewhere map_large_allocations is a no-op (tested below)")
def test_large_buffers_freed_below_a_live_block_go_back_to_the_os_once_mapped(tmp_path):
    import os
    import subprocess

    script = tmp_path / "probe.py"
    script.write_text(_HEAP_PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc's own defaults
    grown = {how: int(subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, check=True,
                                     env=env).stdout.split()[-1])
             for how in ("default", "mapped")}
    # glibc's rising threshold: the 96 MiB of buffers came from the heap and, freed below a live
    # block, stayed resident; mapped, each went back to the OS when freed
    assert grown["default"] >= 80 and grown["mapped"] <= 8, grown


def test_map_large_allocations_is_a_no_op_without_glibc(monkeypatch):
    import mmsearch.data.heap as heap

    monkeypatch.setattr(heap, "_glibc_mallopt", lambda: None)
    assert heap.map_large_allocations() is False
