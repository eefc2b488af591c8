"""Task data opened once per worker process and handed to the next run in it that asks for the same.

Under Ray Tune on one machine, a CPU trial runs in the process of a finished one
(``tune.reuse_actors``). Every trial of a search experiment reads the same data set with the same
settings, and opening it (the latent store's tables, or generating the embedded scenes' data) cost
1.4-2 s of every trial here, 3 % of the machine in ``bench/bench_orchestration.py``. A context that carries a
:class:`ProcessCache` (``context.shared``; Tune's does, one per worker process) keeps the last
data a run opened; the next run with an equal data config gets the same object. Task data is read
only (its batch order is a function of (seed, epoch)), so sharing it changes no result.

One entry is kept: a run that asks for other data drops the old object before opening the new one,
so a process never holds two data sets. Without a cache (a run called directly, a Ray Train worker)
the data is opened for the run alone.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")


class ProcessCache:
    """The last object built, kept for the next request with an equal key (one entry)."""

    def __init__(self) -> None:
        self._entry: tuple[Any, Any] | None = None  # (key, value)
        self.builds = 0  # how many times a value was built (hits do not count)

    def get_or_build(self, key: Any, build: Callable[[], T]) -> T:
        if self._entry is not None and self._entry[0] == key:
            return self._entry[1]
        self._entry = None  # let the old data go before the new is opened
        value = build()
        self._entry = (key, value)
        self.builds += 1
        return value


def open_shared(context: Any, key: Any, open_data: Callable[[], T]) -> T:
    """``open_data()``, or the object an earlier run in this process opened for an equal ``key``
    when ``context`` carries a :class:`ProcessCache` as ``context.shared``."""
    cache = getattr(context, "shared", None)
    if isinstance(cache, ProcessCache):
        return cache.get_or_build(key, open_data)
    return open_data()


__all__ = ["ProcessCache", "open_shared"]
