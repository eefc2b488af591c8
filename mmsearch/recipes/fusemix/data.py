"""Where the FuseMix recipe gets its latent pairs from: the stream protocol, factories, eval sets.

The seam is small on purpose. A *stream* is anything with

    epoch(epoch, batch_size, seed) -> Iterator[dict[str, Tensor | list]]

that yields every row of one split once per call, shuffled as a function of ``(seed, epoch)`` only
(so a resumed run sees the same batches). Keys are column names: the two latent columns as float
``[b, D]`` tensors and, optionally, the group column (int tensor ``[b]`` or a list of str/int ids).

A *stream factory* ``factory(data_config, split, rank, world_size) -> BatchStream`` opens one
split ("train", "val", "test"). The recipe takes one as an argument (or as a ``stream_factory``
attribute of its context); without one it uses :func:`default_stream_factory`, which opens the
split's latent store (``data.store`` / ``val_store`` / ``test_store``, local or S3) with
``mmsearch.data.store.LocalStoreStream`` (plain pyarrow, bounded memory). The Ray Data stream is injected by
``mmsearch.orchestration.ray_data`` because recipes never import Ray. :class:`TensorStream` and
:func:`tensor_stream_factory` serve in-memory tensors (tests, notebooks).

Evaluation needs whole splits with one row per x item: :func:`load_eval_set` returns an
:class:`EvalSet` (x items, y rows, y row -> x item), taken from the stream's own ``eval_set()``
method when it has one, else built by one pass over the stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from mmsearch.data.store import BatchStream  # the one protocol of the latent store's streams
from mmsearch.recipes.fusemix.config import FuseMixDataConfig


class FuseMixDataError(ValueError):
    """The latent data does not fit the config (missing column, wrong dimension, NaN, no rows)."""


StreamFactory = Callable[[FuseMixDataConfig, str, int, int], BatchStream]


@dataclass(frozen=True)
class EvalSet:
    """A retrieval split: ``x[i]`` is item i, ``y[j]`` belongs to item ``y_to_x[j]``."""

    x: Tensor  # [n_items, Dx] float32
    y: Tensor  # [n_rows, Dy] float32
    y_to_x: Tensor  # [n_rows] int64 (the text_to_image of mmsearch.metrics.retrieval)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A torch generator seeded from (seed, epoch) through numpy's SeedSequence (no collisions)."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


class TensorStream:
    """In-memory stream over equally long columns (tensors, or lists for id columns)."""

    def __init__(self, columns: Mapping[str, Tensor | Sequence[Any]]) -> None:
        if not columns:
            raise FuseMixDataError("TensorStream needs at least one column")
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) != 1:
            raise FuseMixDataError(f"TensorStream columns differ in length: {lengths}")
        self._columns = dict(columns)
        self._rows = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._rows

    def epoch(self, epoch: int, batch_size: int, seed: int) -> Iterator[dict[str, Any]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = torch.randperm(self._rows, generator=epoch_generator(seed, epoch))
        for start in range(0, self._rows, batch_size):
            index = order[start : start + batch_size]
            yield {name: _take(values, index) for name, values in self._columns.items()}


def _take(values: Tensor | Sequence[Any], index: Tensor) -> Tensor | list[Any]:
    if isinstance(values, Tensor):
        return values[index]
    return [values[i] for i in index.tolist()]


def tensor_stream_factory(splits: Mapping[str, Mapping[str, Tensor | Sequence[Any]]]) -> StreamFactory:
    """A stream factory over in-memory splits: ``{"train": {"image": x, "text": y, ...}, "val": ...}``."""
    streams = {split: TensorStream(columns) for split, columns in splits.items()}

    def factory(data: FuseMixDataConfig, split: str, rank: int, world_size: int) -> BatchStream:
        if split not in streams:
            raise FuseMixDataError(f"no in-memory data for split {split!r}; have {sorted(streams)}")
        return streams[split]

    return factory


def default_stream_factory(data: FuseMixDataConfig, split: str, rank: int, world_size: int) -> BatchStream:
    """Open ``data.store_uri(split)`` with the local (pyarrow, no Ray) latent-store stream."""
    if data.backend == "ray":
        raise FuseMixDataError(
            "data.backend is 'ray' but no stream factory was given: run through mmsearch.orchestration "
            "(which injects the Ray Data stream) or pass stream_factory= to train_fusemix"
        )
    uri = data.store_uri(split)
    if not uri:
        raise FuseMixDataError(f"no store configured for the {split!r} split (data.{_STORE_KEY[split]} is empty)")
    from mmsearch.data.store import LocalStoreStream, open_store

    columns = [data.x_column, data.y_column] + ([data.group_column] if data.group_column else [])
    store = open_store(uri, expect={data.table: {name: None for name in columns}})  # clear error if a column is missing
    return LocalStoreStream(store.table(data.table), columns, rank=rank, world_size=world_size)


def column_encoder(stream: BatchStream, column: str) -> str | None:
    """The encoder name a stream's metadata records for ``column`` (store streams have ``columns``)."""
    specs = getattr(stream, "columns", None)
    spec = specs.get(column) if isinstance(specs, Mapping) else None
    return getattr(spec, "encoder", None)


_STORE_KEY = {"train": "store", "val": "val_store", "test": "test_store"}


def group_ids_to_tensor(ids: Tensor | Sequence[Any], *, column: str) -> Tensor:
    """Integer ids as int64; other ids (e.g. strings) are numbered in order of first appearance."""
    if isinstance(ids, Tensor):
        if ids.dtype.is_floating_point:
            raise FuseMixDataError(f"group column {column!r} must hold integer or string ids, got {ids.dtype}")
        return ids.long().reshape(-1)
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu":
        return torch.from_numpy(ids.astype(np.int64)).reshape(-1)
    numbering: dict[Any, int] = {}
    return torch.tensor([numbering.setdefault(i, len(numbering)) for i in ids], dtype=torch.long)


def latent_column(batch: Mapping[str, Any], column: str, dim: int | None, *, check_finite: bool) -> Tensor:
    """Column ``column`` of a batch as float32 ``[b, dim]``, with clear errors for bad data."""
    if column not in batch:
        raise FuseMixDataError(f"batch has no column {column!r}; columns: {sorted(batch)}")
    values = batch[column]
    values = torch.from_numpy(values) if isinstance(values, np.ndarray) else values
    if not isinstance(values, Tensor) or values.ndim != 2 or not values.dtype.is_floating_point:
        shape = tuple(values.shape) if hasattr(values, "shape") else type(values).__name__
        raise FuseMixDataError(f"column {column!r} must be a float [batch, dim] tensor, got {shape}")
    if dim is not None and values.shape[1] != dim:
        raise FuseMixDataError(f"column {column!r} has dimension {values.shape[1]}, expected {dim} (dimension mismatch)")
    if check_finite and not bool(torch.isfinite(values).all()):
        raise FuseMixDataError(f"column {column!r} contains NaN or infinite latents")
    return values.float()


def eval_set_from_stream(stream: BatchStream, data: FuseMixDataConfig, *, batch_size: int = 8192) -> EvalSet:
    """One pass over ``stream``: x deduplicated by group id (first row of each group), every y row."""
    xs, ys, groups = [], [], []
    for batch in stream.epoch(0, batch_size, 0):
        xs.append(latent_column(batch, data.x_column, None, check_finite=True))
        ys.append(latent_column(batch, data.y_column, None, check_finite=True))
        if data.group_column is not None:
            if data.group_column not in batch:
                raise FuseMixDataError(f"batch has no group column {data.group_column!r}; columns: {sorted(batch)}")
            ids = batch[data.group_column]
            groups.extend(ids.tolist() if isinstance(ids, (Tensor, np.ndarray)) else list(ids))
    if not xs:
        raise FuseMixDataError("evaluation stream yielded no rows")
    x, y = torch.cat(xs), torch.cat(ys)
    if data.group_column is None:
        return EvalSet(x, y, torch.arange(len(y)))
    numbering: dict[Any, int] = {}
    y_to_x = torch.tensor([numbering.setdefault(g, len(numbering)) for g in groups], dtype=torch.long)
    first_row = torch.full((len(numbering),), len(y_to_x), dtype=torch.long)
    first_row.scatter_reduce_(0, y_to_x, torch.arange(len(y_to_x)), reduce="amin")
    return EvalSet(x[first_row], y, y_to_x)


def load_eval_set(stream: BatchStream, data: FuseMixDataConfig) -> EvalSet:
    """The stream's own ``eval_set()`` if it has one (e.g. a store that keeps items separately), else one pass."""
    own = getattr(stream, "eval_set", None)
    if callable(own):
        result = own()
        return result if isinstance(result, EvalSet) else EvalSet(*result)
    return eval_set_from_stream(stream, data)
