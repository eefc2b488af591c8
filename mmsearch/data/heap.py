"""Give freed heap memory back to the operating system after a one-off burst of small allocations.

Opening a streamed split parses the Parquet metadata and reads the small index columns of every
row group of its store (16,000 row groups in the 16x store of ``bench/bench_task_streaming.py``):
many small C++ and Python allocations, freed again once the index is built. glibc's allocator
keeps such freed blocks in its arenas rather than returning them, so a trial's resident memory
would keep the peak of that burst, and the burst grows with the store (measured: 490 MiB
resident after loading the 16x store's split, 376 MiB after ``malloc_trim``; 342 -> 336 MiB at
1x). ``malloc_trim(0)`` returns it. On other C libraries (macOS, musl) this is a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _glibc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_heap() -> bool:
    """Return the allocator's free heap pages to the OS (glibc ``malloc_trim(0)``); ``True`` if
    this C library has the call (whether or not anything was released)."""
    trim = _glibc_trim()
    if trim is None:
        return False
    trim(0)
    return True


__all__ = ["release_free_heap"]
