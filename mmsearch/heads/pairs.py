"""Re-pairing images and captions across batch rows (ITM negatives, all-pairs evaluation).

A :class:`MultimodalBatch` row is one (text, image) pair. Its fields split into a text side and
an image side; :func:`pair_rows` builds a batch whose row ``r`` takes the image side of
``image_batch`` row ``image_rows[r]`` and the text side of ``text_batch`` row ``text_rows[r]``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

from mmsearch.batch import MultimodalBatch

TEXT_FIELDS = ("text_mask", "text_ids", "text_states")
IMAGE_FIELDS = ("region_feats", "region_boxes", "region_mask", "image_size")
# Value that fills the new positions when a field is padded to a longer length.
_PAD_VALUES = {"text_mask": True, "region_mask": True}


def pair_rows(
    image_batch: MultimodalBatch,
    image_rows: Tensor,
    text_batch: MultimodalBatch,
    text_rows: Tensor,
) -> MultimodalBatch:
    """Model inputs only (targets and meta are dropped): image side from ``image_batch[image_rows]``,
    text side from ``text_batch[text_rows]``; both index tensors are ``[R]`` int64."""
    if image_rows.shape != text_rows.shape or image_rows.dim() != 1:
        raise ValueError(f"image_rows and text_rows must be equal-length 1-d, got {tuple(image_rows.shape)} and {tuple(text_rows.shape)}")
    fields: dict[str, Tensor | None] = {}
    for names, source, rows in ((IMAGE_FIELDS, image_batch, image_rows), (TEXT_FIELDS, text_batch, text_rows)):
        for name in names:
            value = getattr(source, name)
            fields[name] = None if value is None else value[rows.to(value.device)]
    return MultimodalBatch(**fields)


def _pad_to(name: str, value: Tensor, length: int) -> Tensor:
    """Pad dim 1 (tokens or regions) of a per-sample tensor to ``length``."""
    missing = length - value.shape[1]
    if missing <= 0:
        return value
    shape = (value.shape[0], missing, *value.shape[2:])
    filler = torch.full(shape, _PAD_VALUES.get(name, 0), dtype=value.dtype, device=value.device)
    return torch.cat((value, filler), dim=1)


def concat_batches(batches: Iterable[MultimodalBatch]) -> MultimodalBatch:
    """Stack batches row-wise (e.g. a whole evaluation split), padding tokens and regions to the
    longest. Targets are concatenated as they are (they must agree past dim 0); list-valued meta
    entries are joined. Every batch must carry the same optional fields."""
    batches = list(batches)
    if not batches:
        raise ValueError("concat_batches needs at least one batch")
    fields: dict[str, Tensor | None] = {}
    for name in TEXT_FIELDS + IMAGE_FIELDS:
        values = [getattr(b, name) for b in batches]
        present = [v is not None for v in values]
        if not any(present):
            fields[name] = None
            continue
        if not all(present):
            raise ValueError(f"cannot concatenate batches: {name} is set in some batches and missing in others")
        if name == "image_size":
            fields[name] = torch.cat(values)
        else:
            length = max(v.shape[1] for v in values)
            fields[name] = torch.cat([_pad_to(name, v, length) for v in values])
    targets = {}
    for key in batches[0].targets:
        if any(key not in b.targets for b in batches):
            raise ValueError(f"cannot concatenate batches: target {key!r} is missing in some batches")
        shapes = {tuple(b.targets[key].shape[1:]) for b in batches}
        if len(shapes) > 1:
            raise ValueError(f"cannot concatenate batches: target {key!r} has per-row shapes {sorted(shapes)}")
        targets[key] = torch.cat([b.targets[key] for b in batches])
    meta: dict[str, list] = {}
    for key, value in batches[0].meta.items():
        if isinstance(value, list) and all(isinstance(b.meta.get(key), list) for b in batches):
            meta[key] = [item for b in batches for item in b.meta[key]]
    return MultimodalBatch(**fields, targets=targets, meta=meta)


def first_rows_by_key(keys: Sequence[object]) -> tuple[Tensor, Tensor]:
    """For per-row keys (e.g. image ids): ``(first_row [U], group [R])`` where ``first_row[u]`` is
    the first row with the u-th distinct key (in order of appearance) and ``group[r]`` the index
    of row r's key."""
    first_row: dict[object, int] = {}
    for row, key in enumerate(keys):
        first_row.setdefault(key, row)
    index = {key: i for i, key in enumerate(first_row)}
    return (
        torch.tensor(list(first_row.values()), dtype=torch.long),
        torch.tensor([index[key] for key in keys], dtype=torch.long),
    )


__all__ = ["IMAGE_FIELDS", "TEXT_FIELDS", "concat_batches", "first_rows_by_key", "pair_rows"]
