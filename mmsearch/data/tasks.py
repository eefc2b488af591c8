"""``TaskData`` over a precomputed data set: ``open_task_data(cfg)`` -> batches for vqa, itm or vg.

``open_task_data`` reads the card, the vocabularies and every split store's manifest (so a
missing, incomplete or mismatched data set fails before any training), then loads a split's
task sample table into memory on first use, and its ``regions`` table as ``data.regions`` says
(below). Which tables a task reads, and how its targets are loaded and collated, is its
:class:`~mmsearch.data.store_tables.StoreTables` (the scene tasks': ``SCENE_TABLES``; vqa ->
``vqa``, itm -> ``captions`` + ``negatives``, vg -> ``refs``).

Parts: ``weights`` / ``arch`` divide the train split *by image* (``arch_fraction`` of the train
images, drawn with ``split_seed``), ``train`` is all of it, ``val`` / ``test`` are the other
splits. ``limit`` keeps a ``split_seed``-random subset of a part. Shuffled order is a pure
function of ``(seed, epoch)`` (a run restarted at epoch ``e`` serves epoch ``e``'s order).

Memory (``TaskDataConfig.regions``):

* ``memory`` (default): the split's region bank (features and boxes) is held as float16 /
  float32 arrays -- right for the embedded scenes (tens of MB), not for large real data
  (VQA-v2 with bottom-up attention: ~100 regions x 2048 floats x 123k images, ~50 GB float16).
* ``stream``: only each image's location in the store (shard, row group, row) and its size are
  held; each batch reads the row groups holding its images' rows, features and boxes columns
  only (``mmsearch.data.region_rows``), and with ``text_input: states`` the sample table's
  per-token ``states`` likewise (and ITM's hard negatives' states; ``mmsearch.data.table_rows``),
  all of them (every split's) keeping at most ``region_cache_mib`` MiB of decoded row groups; the next
  batch is read in a background thread while the caller uses this one. What stays in memory is
  small per sample: token ids, targets, meta, image of each sample (for VQA-v2 with states, the
  states alone are ~4.7 GB). The batches are exactly the in-memory ones (same order, rows,
  padding, dtypes), the weights/arch division and ``val`` / ``test`` are unchanged, and a shard
  that breaks mid-epoch (truncated, corrupted: pages carry CRCs) fails naming the file. A row
  group is read whole for any of its rows, so in random order a batch reads about one row group
  per distinct image (and per sample, for states) it holds: stores meant for streaming want
  small row groups (``layout.row_group_kib=128``: about one image a group; with 11 a group, an
  epoch decodes 10x the bytes it uses; bench/README.md, issue 11).
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np
import pyarrow as pa

from mmsearch.batch import MultimodalBatch
from mmsearch.data.collate import Ragged, region_fields, text_fields
from mmsearch.data.dataset_root import DatasetCard, DatasetError, DatasetRoot
from mmsearch.data.heap import map_large_allocations, release_free_heap
from mmsearch.data.region_rows import StreamedRegions
from mmsearch.data.store.prefetch import ahead
from mmsearch.data.store import Store, StoreError, epoch_seed, open_store
from mmsearch.data.store.validate import check_expectations
from mmsearch.data.store_tables import SCENE_TABLES, SplitArrays as _Split, StoreTables
from mmsearch.data.table_rows import RowGroupCache, RowPlan, StreamedRows, TableRowReader
from mmsearch.data.task_data import Part, TaskDataConfig, TaskInfo, row_batches, shuffled_order

TASK_TABLE = {task: tables.table for task, tables in SCENE_TABLES.items()}  # the sample table of each scene task
PARTS: tuple[str, ...] = ("weights", "arch", "train", "val", "test")
MiB = 2**20
_SPLIT_OF_PART = {"weights": "train", "arch": "train", "train": "train", "val": "val", "test": "test"}


def open_task_data(cfg: TaskDataConfig) -> "StoreTaskData":
    """The ``TaskData`` of ``cfg.task`` over the precomputed data set at ``cfg.root``."""
    if not cfg.root:
        raise DatasetError("data.root is empty: give the root of a precomputed data set (jobs/precompute_latents.py)")
    root = DatasetRoot(cfg.root)
    card = root.read_card()
    table = TASK_TABLE[cfg.task]
    if table not in card.tables:
        raise DatasetError(f"{root.uri}: task {cfg.task!r} needs table {table!r}, but the data set has {list(card.tables)}")
    if "regions" not in card.tables:
        raise DatasetError(f"{root.uri}: the data set has no 'regions' table (tables {list(card.tables)})")
    if cfg.text_input == "states" and card.text_state_dim <= 0:
        raise DatasetError(
            f"{root.uri}: data.text_input is 'states' but the data set stores no per-token states; "
            "precompute it with text.states=true"
        )
    return StoreTaskData(cfg, root, card)


class StoreTaskData:
    """``mmsearch.data.task_data.TaskData`` over a precomputed data set (see the module docstring);
    ``tables``: the task's tables (default: the scene task ``cfg.task``'s)."""

    def __init__(self, cfg: TaskDataConfig, root: DatasetRoot, card: DatasetCard, tables: StoreTables | None = None) -> None:
        self.cfg, self.root, self.card = cfg, root, card
        self.tables = tables if tables is not None else SCENE_TABLES[cfg.task]
        self.table = self.tables.table
        self.vocab = root.read_vocab()
        self.answers = root.read_answers() if self.tables.answers else []
        if self.tables.answers and not self.answers:
            raise DatasetError(f"{root.uri}: the answer vocabulary is empty")
        self.stores = {split: self._open_store(split) for split in card.splits}
        self._splits: dict[str, _Split] = {}
        # stream: one budget of decoded row groups for every streamed table of every split
        self.stream_cache = RowGroupCache(cfg.region_cache_mib * MiB) if cfg.regions == "stream" else None
        self._parts: dict[str, np.ndarray] = {}
        self.info = TaskInfo(
            task=cfg.task,
            region_dim=card.region_dim,
            vocab_size=len(self.vocab),
            text_state_dim=card.text_state_dim,
            num_answers=len(self.answers),
            answers=tuple(self.answers),
            max_regions=card.max_regions,
            max_tokens=card.max_tokens,
            embedding_init=self._embedding_rows() if cfg.text_input == "tokens" else None,
            optional_targets=self._optional_targets(),
        )

    def _optional_targets(self) -> tuple[str, ...]:
        """The optional target columns every split's sample table has (VQA: ``referent_boxes``)."""
        columns = [set(store.table(self.table).columns) for store in self.stores.values() if self.table in store.tables]
        return tuple(c for c in self.tables.optional_targets if columns and all(c in found for found in columns))

    # -- TaskData -------------------------------------------------------------------------------

    def num_samples(self, part: Part) -> int:
        return len(self._rows(part))

    def batches(
        self,
        part: Part,
        *,
        batch_size: int,
        epoch: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> Iterator[MultimodalBatch]:
        rows = self._rows(part)
        data = self._split(_SPLIT_OF_PART[part])
        chunks = (rows[positions] for positions in self.batch_positions(part, batch_size=batch_size, epoch=epoch, seed=seed,
                                                                         shuffle=shuffle, drop_last=drop_last))
        if self._streams(data):  # streamed: the next batch is read while this one is used
            yield from ahead(lambda chunk: self.collate(data, chunk), chunks)
            return
        for chunk in chunks:
            yield self.collate(data, chunk)

    def batch_positions(self, part: Part, *, batch_size: int, epoch: int = 0, seed: int = 0, shuffle: bool = True,
                        drop_last: bool = False) -> Iterator[np.ndarray]:
        """The samples of each batch :meth:`batches` yields, as positions within ``part`` (for a
        reader elsewhere that collates them with :meth:`collate_rows`)."""
        positions = np.arange(len(self._rows(part)), dtype=np.int64)
        return row_batches(positions, batch_size, epoch_seed(seed, epoch) if shuffle else None, drop_last, self.cfg.shuffle_block)

    def epoch_order(self, part: Part, *, epoch: int, seed: int) -> np.ndarray:
        """The positions within ``part`` in the shuffled order of ``(seed, epoch)`` (what
        :meth:`batch_positions` cuts into batches; data-parallel ranks stride over it)."""
        return shuffled_order(len(self._rows(part)), epoch_seed(seed, epoch), self.cfg.shuffle_block)

    def collate_rows(self, part: Part, positions: np.ndarray, fetched: Mapping[str, pa.Table] | None = None) -> MultimodalBatch:
        """The batch of the samples at ``positions`` (0-based within ``part``), as ``batches`` collates them.

        ``fetched`` (``regions: stream`` only): each stream's rows named by :meth:`batch_plan`,
        read elsewhere (a Ray Data task, with :meth:`row_readers`); without it they are read here."""
        rows = self._rows(part)[np.asarray(positions, dtype=np.int64)]
        return self.collate(self._split(_SPLIT_OF_PART[part]), rows, fetched)

    def batch_plan(self, part: Part, positions: np.ndarray) -> dict[str, RowPlan]:
        """Where each streamed table's rows for the samples at ``positions`` are stored: stream name
        (``regions``, ``text``, ``negatives``) -> plan; empty when the split is held in memory."""
        data = self._split(_SPLIT_OF_PART[part])
        rows = self._rows(part)[np.asarray(positions, dtype=np.int64)]
        return self._plans(data, rows)

    def row_readers(self, part: Part) -> dict[str, TableRowReader]:
        """A picklable reader of each of ``part``'s streams (for :meth:`batch_plan`'s plans)."""
        return {name: TableRowReader(stream.table, stream.columns) for name, stream in self._streams(self._split(_SPLIT_OF_PART[part])).items()}

    # -- collation ------------------------------------------------------------------------------

    def collate(self, data: _Split, rows: np.ndarray, fetched: Mapping[str, pa.Table] | None = None) -> MultimodalBatch:
        """The batch of samples ``rows`` of ``data`` (vectorised gathers, dynamic padding)."""
        streams = self._streams(data)
        if fetched is not None and set(fetched) != set(streams):
            raise ValueError(f"rows were given for streams {sorted(fetched)}, but this data set streams {sorted(streams)}")
        streamed = {}  # this batch's rows of each stream, read here or given
        for name, plan in self._plans(data, rows).items():
            got = streams[name].read(plan) if fetched is None else fetched[name]
            streamed[name] = (plan, streams[name].assemble(plan, got))
        if "text" in streamed:
            plan, columns = streamed["text"]
            fields = text_fields(plan.local, None, columns["states"])
        else:
            fields = text_fields(rows, data.token_ids, data.states)
        images = data.sample_image[rows]
        if "regions" in streamed:
            plan, columns = streamed["regions"]
            fields.update(region_fields(plan.local, columns["features"], columns["boxes"], data.sizes[plan.rows]))
        else:
            fields.update(region_fields(images, data.features, data.boxes, data.sizes))
        targets = self.tables.collate_targets(data, rows, len(self.answers), streamed)
        meta = {name: values[rows].tolist() for name, values in data.meta.items()}
        return MultimodalBatch(**fields, targets=targets, meta=meta)

    def _streams(self, data: _Split) -> dict[str, StreamedRows]:
        """The split's streamed tables by stream name (none when it is held in memory)."""
        found = {"regions": data.regions, "text": data.text_rows, "negatives": data.targets.get("neg_rows")}
        return {name: stream for name, stream in found.items() if stream is not None}

    def _plans(self, data: _Split, rows: np.ndarray) -> dict[str, RowPlan]:
        streams = self._streams(data)
        wanted = {"regions": data.sample_image[rows], "text": rows}
        if self.tables.target_rows is not None and streams:
            wanted.update(self.tables.target_rows(data, rows))
        return {name: stream.plan(wanted[name]) for name, stream in streams.items()}

    # -- parts ----------------------------------------------------------------------------------

    def _rows(self, part: str) -> np.ndarray:
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; parts: {', '.join(PARTS)}")
        if part not in self._parts:
            rows = self._part_rows(part)
            cap = self.cfg.limit.get(part)
            if cap is not None and cap < len(rows):
                rng = np.random.default_rng([self.cfg.split_seed, PARTS.index(part)])
                rows = np.sort(rng.choice(rows, size=cap, replace=False))
            self._parts[part] = rows
        return self._parts[part]

    def _part_rows(self, part: str) -> np.ndarray:
        data = self._split(_SPLIT_OF_PART[part])
        everything = np.arange(data.num_samples, dtype=np.int64)
        if part not in ("weights", "arch"):
            return everything
        arch_images = self.arch_images()
        in_arch = np.isin(data.image_ids[data.sample_image], arch_images)
        return everything[in_arch] if part == "arch" else everything[~in_arch]

    def arch_images(self) -> np.ndarray:
        """Image ids of the train split whose samples form the ``arch`` part (the rest: ``weights``)."""
        data = self._split("train")
        used = np.unique(data.image_ids[data.sample_image].astype(str))
        if len(used) < 2:
            raise DatasetError(f"{self.root.uri}: the train split has {len(used)} image(s) with {self.table}; "
                               "dividing it into weights and arch parts needs at least 2")
        count = min(len(used) - 1, max(1, round(self.cfg.arch_fraction * len(used))))
        order = np.random.default_rng(self.cfg.split_seed).permutation(len(used))
        return np.sort(used[order[:count]]).astype(object)

    # -- loading --------------------------------------------------------------------------------

    def _open_store(self, split: str) -> Store:
        """Open and check one split's store against the card (shards, tables, dimensions, rows)."""
        card = self.card
        expect: dict[str, dict[str, Any]] = {"regions": {"features": card.region_dim, "boxes": 4}, self.table: {"token_ids": None}}
        if self.cfg.text_input == "states":
            expect[self.table]["states"] = card.text_state_dim
            for extra in self.tables.state_tables:
                if extra in card.tables:
                    expect[extra] = {"states": card.text_state_dim}
        where = f"data set {self.root.uri}, split {split!r}"
        try:
            store = open_store(self.root.split_location(split))
            for table in expect:
                if table in store.meta.tables and store.meta.tables[table].num_rows == 0:
                    raise DatasetError(f"{where}: no {table} rows (empty split)")
            check_expectations(store.uri, store.meta, expect)
        except StoreError as exc:
            raise DatasetError(f"{where} does not match its card: {exc}") from None
        return store

    def _split(self, split: str) -> _Split:
        if split not in self._splits:
            if split not in self.stores:
                raise DatasetError(f"{self.root.uri}: the data set has no {split!r} split (splits: {list(self.stores)})")
            self._splits[split] = self._load(split)
        return self._splits[split]

    def _load(self, split: str) -> _Split:
        store = self.stores[split]
        samples_table = store.table(self.table)
        streamed = features = boxes = None
        if self.cfg.regions == "stream":
            streamed = StreamedRegions(store.table("regions"), self.stream_cache)
            release_free_heap()  # the index's build: every row group's metadata parsed, then freed
            map_large_allocations()  # each step's batch buffers: unmapped when freed, not kept in the heap
            image_ids, sizes = streamed.image_ids, streamed.sizes
        else:
            regions = store.table("regions").read_arrow(["image_id", "image_h", "image_w", "features", "boxes"])
            image_ids = np.asarray(regions.column("image_id").to_pylist(), dtype=object)
            sizes = np.stack([regions.column("image_h").to_numpy(), regions.column("image_w").to_numpy()], axis=1)
            features, boxes = Ragged.from_arrow(regions.column("features")), Ragged.from_arrow(regions.column("boxes"))
            del regions
        index = {image_id: row for row, image_id in enumerate(image_ids)}
        states_wanted = self.cfg.text_input == "states"
        text_rows = (StreamedRows(samples_table, ("states",), self.stream_cache, per_sample=True)
                     if states_wanted and streamed is not None else None)
        # in memory: token ids, or the states when they are not streamed; the rest always
        columns = [c for c in samples_table.columns if c != "states" or (states_wanted and text_rows is None)]
        samples = samples_table.read_arrow(columns)
        sample_images = samples.column("image_id").to_pylist()
        unknown = [i for i in sample_images if i not in index]
        if unknown:
            raise DatasetError(f"{store.uri}: {self.table} rows refer to images missing from 'regions': {unknown[:5]}")
        data = _Split(
            features=features,
            boxes=boxes,
            sizes=sizes,
            image_ids=image_ids,
            sample_image=np.asarray([index[i] for i in sample_images], dtype=np.int64),
            token_ids=None if states_wanted else Ragged.from_arrow(samples.column("token_ids")),
            states=Ragged.from_arrow(samples.column("states")) if states_wanted and text_rows is None else None,
            meta={name: np.asarray(samples.column(name).to_pylist(), dtype=object) for name in self.tables.meta},
            regions=streamed,
            text_rows=text_rows,
            stream_cache=self.stream_cache,
        )
        self.tables.load_targets(store, samples, data, self.cfg.text_input)
        if streamed is not None:  # and the sample table's read, likewise
            del samples
            release_free_heap()
        return data

    def _embedding_rows(self) -> np.ndarray:
        from mmsearch.data.text import minilm_embedding_rows

        return minilm_embedding_rows(self.vocab).numpy()


__all__ = ["PARTS", "StoreTaskData", "TASK_TABLE", "open_task_data"]
