"""Read ahead: the next item is prepared in one background thread while the caller uses this one."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ahead(make: Callable[[T], R], items: Iterable[T], depth: int = 1) -> Iterator[R]:
    """``make(item)`` for each item, in order, computed ``depth`` items ahead in one background
    thread (reading and decoding row groups release the GIL): the next batch is read while the
    caller trains on this one. Errors surface where their item is yielded."""
    pool = ThreadPoolExecutor(1)
    queue: deque[Future] = deque()
    try:
        for item in items:
            queue.append(pool.submit(make, item))
            if len(queue) > depth:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        for future in queue:
            future.cancel()
        pool.shutdown(wait=True)


__all__ = ["ahead"]
