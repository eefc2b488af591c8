"""Streamed task rows delivered by Ray Data: the batches of a ``data.regions: stream`` data set,
their streamed rows (region features and boxes; with ``text_input: states`` the samples' and ITM
negatives' per-token states) read by Ray Data tasks instead of the process that trains.

For an ordered list of batches (sample positions of one part), :class:`RayDataTaskRows` builds a
Ray Data dataset of the batches' plans (where each batch's rows of each streamed table are stored:
``StoreTaskData.batch_plan``, :class:`~mmsearch.data.table_rows.RowPlan`); ``map_batches`` reads
those rows from the store's Parquet row groups (:func:`read_planned_rows`, named shard files in its
errors), and they come back as Arrow blocks through the object store, in order (columns named
``<stream>.<column>``); the process collates each batch with the token ids, targets and meta it
holds (``collate_rows(part, positions, fetched)``), the next one on a thread while the caller uses
this one. So a batch is exactly the one the local reader would give.

A process's first Ray Data execution starts the reading tasks' worker processes: 2.2-2.9 s to its
first block on 2 cores (a probe; the next executions: 0.07-0.1 s), which a trial stopped by ASHA
after one short epoch would mostly spend waiting. With ``local_start`` (default) the first pass
therefore begins at once on batches the process reads itself (uncached readers of its own: the
next batch on a thread) while a small Ray Data execution (a batch per reading task) starts on a thread; from the batch
after it ends, the pass and every later one come through Ray Data (``stats()``: ``local_batches``
and ``local_rows`` next to ``ray_data_blocks`` / ``ray_data_rows``).

Used by Ray Train workers (:mod:`.train_rows`) and by search trials under Tune
(:class:`RayDataTaskData`, which the trial wraps around its data when it streams), for a training
split streamed from at least ``data.ray_data_min_mib`` stored (:func:`reads_through_ray_data`;
below, the process reads its rows itself). Creating one has two Ray workers import the reading
code while the caller builds its model (:func:`warm_up`). A trial's pass ends with none of its
reading tasks in flight (its execution stopped, the first execution and the warm-up waited for):
Tune ends a trial's process at the report that reaches an ASHA rung or ``max_t``, and tasks in
flight then failed and were retried as it went, an error line each in the trial's log. A Ray
Train worker, which is not ended at a report, waits so only at its end (``settle``). One dataset
per pass over a part; its start costs about 0.3-0.8 s on 2 cores (measured: a Ray Data execution of
26 small tasks, from_arrow -> map_batches, the first one in a process about 4 s with the worker
start). The reading tasks ask for ``read_cpus`` CPUs each (default 0: they mostly wait on
storage and decode in Arrow, and a cluster whose CPUs are all held by trials or training workers
still runs them), at most ``read_tasks`` at a time.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import ray.data

from mmsearch.batch import MultimodalBatch
from mmsearch.data.table_rows import TableRowReader
from mmsearch.data.store.prefetch import ahead
from mmsearch.data.task_data import Part, TaskInfo
from mmsearch.orchestration.quiet import quiet_data_context

LOG = logging.getLogger(__name__)
BATCH_COLUMN = "batch"  # which batch of the pass a plan / row belongs to
STREAM_COLUMN = "stream"  # which stream (index into the pass's stream names) a plan / row belongs to
PLAN_COLUMNS = ("group", "offset")  # row group across the streamed table, row within it


def read_planned_rows(plans: pa.Table, readers: dict[str, TableRowReader], names: tuple[str, ...]) -> pa.Table:
    """The Ray Data call: the rows ``plans`` names (whole batches or parts of them), each tagged
    with its batch and stream, the columns of stream ``s`` named ``s.<column>`` (null in the other
    streams' rows); a shard that cannot be read raises ``StoreError`` naming the file."""
    batch, stream = plans.column(BATCH_COLUMN).to_numpy(), plans.column(STREAM_COLUMN).to_numpy()
    groups, offsets = (plans.column(name).to_numpy() for name in PLAN_COLUMNS)
    parts = []
    for start, stop in runs(batch * len(names) + stream):
        name = names[int(stream[start])]
        rows = readers[name].read_rows(groups[start:stop], offsets[start:stop])
        rows = rows.rename_columns([f"{name}.{column}" for column in rows.column_names])
        tags = {BATCH_COLUMN: pa.array(batch[start:stop], pa.int64()), STREAM_COLUMN: pa.array(stream[start:stop], pa.int8())}
        for column, values in tags.items():
            rows = rows.append_column(column, values)
        parts.append(rows)
    return pa.concat_tables(parts, promote_options="default")


@ray.remote(num_cpus=0)
def _imported() -> bool:
    """Nothing: running it makes a Ray worker import this module (pyarrow, torch, the store reader)."""
    return True


def warm_up(read_tasks: int = 2) -> list[ray.ObjectRef]:
    """Have ``read_tasks`` Ray workers import what the reading tasks run, now, while the caller
    builds its model (:class:`RayDataTaskRows` does on creation): a process's first pass reached
    its first batch after about 4 s without, 1.5-1.7 s with 3 s of head start (a probe on this
    machine); with only 0.5 s of head start it gained nothing (2.9 against 2.2 s, a later probe:
    the imports compete for the 2 cores), which ``local_start`` covers. Returns the refs."""
    return [_imported.remote() for _ in range(read_tasks)]


def runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal consecutive ``values``."""
    if len(values) == 0:
        return []
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1, [len(values)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def streams_rows(data: Any, part: Part = "train") -> bool:
    """Whether ``data`` reads rows of ``part`` from a store per batch (``regions: stream``)."""
    plan = getattr(data, "batch_plan", None)
    return callable(plan) and data.num_samples(part) > 0 and bool(plan(part, np.zeros(1, np.int64)))


def reads_through_ray_data(data: Any) -> bool:
    """Whether a Tune trial or Ray Train worker reads ``data``'s streamed rows through Ray Data:
    it streams them, and its training split's streamed tables hold at least
    ``data.ray_data_min_mib`` MiB stored (below, the process reads them itself)."""
    if not streams_rows(data):
        return False
    cfg = getattr(data, "cfg", None)
    least = getattr(cfg, "ray_data_min_mib", 0) * 2**20
    stored = sum(shard.bytes for reader in data.row_readers("train").values() for shard in reader.table.manifest.shards)
    return stored >= least


class RayDataTaskRows:
    """Batches of ``data`` whose streamed rows Ray Data tasks read (see the module docstring).

    ``data``: a ``TaskData`` with ``batch_plan`` / ``row_readers`` / ``collate_rows(part,
    positions, fetched)`` (``mmsearch.data.tasks.StoreTaskData`` with ``regions: stream``).
    """

    def __init__(self, data: Any, *, read_cpus: float = 0.0, read_tasks: int = 2, prefetch_blocks: int = 2,
                 local_start: bool = True, settle_each_pass: bool = True, warming: list[ray.ObjectRef] | None = None) -> None:
        self.data = data
        self.read_cpus, self.read_tasks, self.prefetch_blocks = read_cpus, read_tasks, prefetch_blocks
        # Wait at the end of every pass for Ray Data's start (see batches): a Tune trial's process
        # may be ended at its next report; a Ray Train worker's is not, and calls settle() at its end.
        self.settle_each_pass = settle_each_pass
        self.local_start = local_start
        self._readers: dict[str, dict[str, TableRowReader]] = {}
        self._ray_data_up = threading.Event()  # set once a first (small) Ray Data execution has ended
        self._warming: threading.Thread | None = None
        # The reading tasks' workers start while the caller builds its model (``warming``: a
        # warm-up the caller started earlier, say before it opened the data).
        self._warm_up = warm_up(read_tasks) if warming is None else warming
        self.blocks_received = 0  # Arrow blocks of streamed rows that came through Ray Data
        self.rows_received = 0  # rows in them (of every stream)
        self.local_batches = 0  # batches read here while Ray Data started (local_start)
        self.local_rows = 0  # their streamed rows

    def batches(self, part: Part, batches: Sequence[np.ndarray]) -> Iterator[MultimodalBatch]:
        """The batches of samples ``batches`` (positions within ``part``), in order."""
        batches = list(batches)
        blocks: Iterator[pa.Table] | None = None
        try:
            served = 0
            if batches and self.local_start and not self._ray_data_up.is_set():  # read here while Ray Data starts
                self._start_ray_data(part, batches[-self.read_tasks:])
                for batch in self._read_here_until_ray_data_is_up(part, batches):
                    served += 1
                    yield batch
            rest = batches[served:]
            if not rest:
                return
            blocks = iter(self.dataset(part, rest).iter_batches(batch_size=None, batch_format="pyarrow",
                                                                 prefetch_batches=self.prefetch_blocks))
            yield from ahead(lambda item: self.data.collate_rows(part, rest[item[0]], self._by_stream(part, item[1])),
                             self._batch_rows(blocks))
        finally:
            # A pass ends with no reading task of its own in flight: Ray Data stops its execution
            # now, not when the iterator is collected, and (settle_each_pass) the first small
            # execution and the warm-up are waited for. A process may be ended at any report (Tune
            # stops a trial at the report that reaches an ASHA rung or max_t): its tasks then in
            # flight would fail and be retried as it goes, an error line each in its log ("Failed
            # to push error to driver").
            close = getattr(blocks, "close", None)
            if callable(close):
                close()
            if self.settle_each_pass:
                self.settle()

    def settle(self) -> None:
        """Wait until the first small execution and the warm-up tasks have ended (at once, as a
        rule, after the first pass): then no task of this reader is in flight between passes."""
        if self._warming is not None:
            self._warming.join()
        ray.wait(self._warm_up, num_returns=len(self._warm_up))  # a failure is no matter

    def _start_ray_data(self, part: Part, batches: list[np.ndarray]) -> None:
        """Run a small Ray Data pass on a thread, once: a process's first execution starts the
        reading tasks' worker processes (2.2-2.9 s to its first block on 2 cores, a probe; the
        next ones: 0.07-0.1 s), during which the batches are read here. One batch per reading
        task, so that all of them start now (with one, the second worker started in the middle
        of a later pass: a 2 s stall, bench/README.md)."""
        if self._warming is not None:
            return

        def first_execution() -> None:
            try:
                for _ in self.dataset(part, batches).iter_batches(batch_size=None, batch_format="pyarrow"):
                    pass
            except Exception:  # noqa: BLE001 - the pass that reads these rows reports what went wrong
                LOG.debug("the first Ray Data execution failed", exc_info=True)
            finally:
                self._ray_data_up.set()

        self._warming = threading.Thread(target=first_execution, name="ray-data-start", daemon=True)
        self._warming.start()

    def _read_here_until_ray_data_is_up(self, part: Part, batches: list[np.ndarray]) -> Iterator[MultimodalBatch]:
        """The first batches, read in this process (with the pass's own uncached readers, the next
        batch on a thread while the caller uses this one) until Ray Data is up or the pass ends."""
        readers = self._part_readers(part)

        def read(positions: np.ndarray) -> MultimodalBatch:
            plans = self.data.batch_plan(part, positions)
            fetched = {name: reader.read_rows(plans[name].groups, plans[name].offsets) for name, reader in readers.items()}
            self.local_rows += sum(t.num_rows for t in fetched.values())
            return self.data.collate_rows(part, positions, fetched)

        with ThreadPoolExecutor(1, thread_name_prefix="local-rows") as pool:
            pending, index = pool.submit(read, batches[0]), 0
            while pending is not None:
                batch = pending.result()
                index += 1
                more = index < len(batches) and not self._ray_data_up.is_set()
                pending = pool.submit(read, batches[index]) if more else None
                self.local_batches += 1
                yield batch

    def dataset(self, part: Part, batches: Sequence[np.ndarray]) -> ray.data.Dataset:
        """One pass's Ray Data dataset: a plan block per batch, mapped to that batch's rows (a
        block per batch each way: Ray Data merges a task's outputs into one block, and 8 batches
        a block spilled 0.4-1.2 GB at 4x-16x behind a 256 MiB object store, bench/README.md)."""
        readers = self._part_readers(part)
        blocks = [self.plan_block(part, index, positions) for index, positions in enumerate(batches)]
        # A dataset seals a copy of the current DataContext: in order (the batches already are in
        # the pass's order), no progress bars for a process's private dataset. from_blocks, not
        # from_arrow: from_arrow reads each block's schema in a task of one CPU, which never starts
        # while trials or training workers hold every CPU (the pass hung there under Tune).
        context = quiet_data_context(ray.data.DataContext.get_current().copy())
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        with ray.data.DataContext.current(context):
            return ray.data.from_blocks(blocks).map_batches(
                read_planned_rows, fn_args=(readers, tuple(readers)), batch_format="pyarrow", batch_size=None, zero_copy_batch=True,
                num_cpus=self.read_cpus, compute=ray.data.TaskPoolStrategy(size=min(self.read_tasks, len(blocks))))

    def plan_block(self, part: Part, index: int, positions: np.ndarray) -> pa.Table:
        """Batch ``index``'s plan: a row per distinct row of each stream (batch, stream, group,
        offset), stream by stream in the order of :meth:`row_readers`' names."""
        names = tuple(self._part_readers(part))
        plans = self.data.batch_plan(part, positions)
        codes = [np.full(len(plans[name].rows), code, np.int8) for code, name in enumerate(names)]
        return pa.table({
            BATCH_COLUMN: np.full(sum(len(c) for c in codes), index, np.int64),
            STREAM_COLUMN: np.concatenate(codes),
            "group": np.concatenate([plans[name].groups for name in names]).astype(np.int64),
            "offset": np.concatenate([plans[name].offsets for name in names]).astype(np.int64)})

    def stats(self) -> dict[str, int]:
        """Totals so far: Arrow blocks and streamed rows received through Ray Data, and the batches
        (and their streamed rows) read here while it started."""
        return {"ray_data_blocks": self.blocks_received, "ray_data_rows": self.rows_received,
                "local_batches": self.local_batches, "local_rows": self.local_rows}

    def _part_readers(self, part: Part) -> dict[str, TableRowReader]:
        if part not in self._readers:
            self._readers[part] = self.data.row_readers(part)
        return self._readers[part]

    def _by_stream(self, part: Part, rows: pa.Table) -> dict[str, pa.Table]:
        """One batch's rows split by stream, each with its table's own column names (a stream
        with no rows in this batch, say no hard negatives: an empty table)."""
        readers = self._part_readers(part)
        names = tuple(readers)
        fetched = {name: reader.table.empty_arrow(list(reader.columns)) for name, reader in readers.items()}
        stream = rows.column(STREAM_COLUMN).to_numpy()
        for start, stop in runs(stream):
            name = names[int(stream[start])]
            part_rows = rows.slice(start, stop - start).select([f"{name}.{column}" for column in readers[name].columns])
            fetched[name] = part_rows.rename_columns(list(readers[name].columns))
        return fetched

    def _batch_rows(self, blocks: Iterator[pa.Table]) -> Iterator[tuple[int, pa.Table]]:
        """``(batch index, its rows)`` from blocks in order (a batch's rows may span blocks, and a
        block may hold several batches)."""
        pending: list[pa.Table] = []
        current = -1
        for block in blocks:
            self.blocks_received += 1
            self.rows_received += block.num_rows
            batch = block.column(BATCH_COLUMN).to_numpy()
            for start, stop in runs(batch):
                if int(batch[start]) != current and pending:
                    yield current, pa.concat_tables(pending)
                    pending = []
                current = int(batch[start])
                pending.append(block.slice(start, stop - start))
        if pending:
            yield current, pa.concat_tables(pending)


class RayDataTaskData:
    """A streamed ``TaskData`` whose batches get their streamed rows through Ray Data: the same
    batches, in the same order, as ``inner.batches`` (a search trial under Tune wraps its data so)."""

    def __init__(self, inner: Any, **options: Any) -> None:
        self.inner = inner
        self.info: TaskInfo = inner.info
        self.rows = RayDataTaskRows(inner, **options)

    def num_samples(self, part: Part) -> int:
        return self.inner.num_samples(part)

    def batches(self, part: Part, *, batch_size: int, epoch: int = 0, seed: int = 0, shuffle: bool = True,
                drop_last: bool = False) -> Iterator[MultimodalBatch]:
        order = self.inner.batch_positions(part, batch_size=batch_size, epoch=epoch, seed=seed, shuffle=shuffle, drop_last=drop_last)
        return self.rows.batches(part, order)

    def collate_rows(self, part: Part, positions: np.ndarray) -> MultimodalBatch:
        return self.inner.collate_rows(part, positions)

    def stats(self) -> dict[str, int]:
        return self.rows.stats()

    def __getattr__(self, name: str) -> Any:  # the inner data's other attributes (arch_images, ...)
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def ray_data_task_data(data: Any) -> Any:
    """``data`` wrapped in :class:`RayDataTaskData` when its rows are read through Ray Data
    (:func:`reads_through_ray_data`), else ``data``."""
    return RayDataTaskData(data) if callable(getattr(data, "batch_positions", None)) and reads_through_ray_data(data) else data


__all__ = ["BATCH_COLUMN", "RayDataTaskData", "RayDataTaskRows", "ray_data_task_data", "read_planned_rows", "reads_through_ray_data",
           "streams_rows", "warm_up"]
