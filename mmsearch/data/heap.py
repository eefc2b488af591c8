"""Give freed heap memory back to the operating system after a one-off burst of small allocations.

Opening a streamed split parses the Parquet metadata and reads the small index columns of every
row group of its store (16,000 row groups in the 16x store of ``bench/bench_task_streaming.py``):
many small C++ and Python allocations, freed again once the index is built. glibc's allocator
keeps such freed blocks in its arenas rather than returning them, so a trial's resident memory
would keep the peak of that burst, and the burst grows with the store (measured: 490 MiB
resident after loading the 16x store's split, 376 MiB after ``malloc_trim``; 342 -> 336 MiB at
1x). ``malloc_trim(0)`` returns it.

Streaming allocates and frees a batch's buffers every step (a collated batch of 64 VQA samples:
about 12 MB of float32 region features). glibc gives a block of at least its mmap threshold a
mapping of its own, unmapped when freed; but the threshold starts at 128 KiB and rises to the size
of any mapped block freed (up to 32 MiB), after which such buffers come from the heap arenas, whose
freed space stays resident and fragments: a streamed trial's resident memory then grew with the
epochs it ran and varied by 50-150 MiB between runs. :func:`map_large_allocations` fixes the
threshold (which also stops it rising): measured, one process streaming the 1x store of
``bench/bench_task_streaming.py`` for 16 epochs with a 100 ms CPU step peaked at 782-937 MiB
(five runs), 575-590 MiB so (four), at 605-608 rows/s against 612-616 (each big buffer is
mapped and zeroed anew).

On other C libraries (macOS, musl) both calls are no-ops.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


M_MMAP_THRESHOLD = -3  # glibc <malloc.h>: mallopt's parameter for the mmap threshold (bytes)
MAPPED_FROM_BYTES = 128 * 1024  # glibc's own starting threshold, kept fixed


@functools.cache
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - glibc has both; others raise AttributeError
        return libc
    except (OSError, AttributeError):  # not glibc
        return None


def _glibc_trim():
    libc = _glibc()
    return None if libc is None else libc.malloc_trim


def _glibc_mallopt():
    libc = _glibc()
    return None if libc is None else libc.mallopt


def release_free_heap() -> bool:
    """Return the allocator's free heap pages to the OS (glibc ``malloc_trim(0)``); ``True`` if
    this C library has the call (whether or not anything was released)."""
    trim = _glibc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def map_large_allocations(threshold_bytes: int = MAPPED_FROM_BYTES) -> bool:
    """Give every allocation of at least ``threshold_bytes`` a mapping of its own, returned to the
    OS when freed, and keep that threshold fixed (glibc ``mallopt(M_MMAP_THRESHOLD)``: the
    process-wide allocator setting; see the module docstring). ``True`` if it was set."""
    mallopt = _glibc_mallopt()
    return mallopt is not None and mallopt(M_MMAP_THRESHOLD, int(threshold_bytes)) == 1


__all__ = ["MAPPED_FROM_BYTES", "map_large_allocations", "release_free_heap"]
