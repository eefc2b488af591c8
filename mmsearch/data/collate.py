"""Collation: rows of in-memory ragged columns -> the padded tensors of a ``MultimodalBatch``.

Variable-length data (a text's tokens or states, an image's regions and boxes, a question's
answers) is held as :class:`Ragged`: one flat array of all records' rows plus offsets, converted
once when a split is loaded. Collating a batch is then a handful of vectorised gathers, padded
to the longest record *in the batch* (dynamic padding), with masks ``True`` at padding, float16
storage cast to float32 per batch. ``values`` may be any array with numpy fancy indexing (a
``np.memmap`` of a large feature file works unchanged).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch


@dataclass(frozen=True)
class Ragged:
    """Records of varying length: record ``i`` is ``values[offsets[i]:offsets[i + 1]]``."""

    values: np.ndarray  # [total, ...]
    offsets: np.ndarray  # int64 [n + 1], offsets[0] == 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self, rows: np.ndarray | None = None) -> np.ndarray:
        if rows is None:
            return np.diff(self.offsets)
        return self.offsets[rows + 1] - self.offsets[rows]

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(padded [B, L, ...], mask [B, L] True at padding)``; L = longest of ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        width = int(lengths.max(initial=0))
        valid = np.arange(width)[None, :] < lengths[:, None]
        if width == 0:
            return np.zeros((len(rows), 0, *self.values.shape[1:]), self.values.dtype), ~valid
        index = np.where(valid, starts[:, None] + np.arange(width)[None, :], 0)
        out = self.values[index]
        out[~valid] = 0
        return out, ~valid

    @classmethod
    def from_arrow(cls, column: pa.ChunkedArray | pa.Array) -> "Ragged":
        """From a store ``list`` column (values [total]) or ``sequence`` column (values [total, dim])."""
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        offsets = array.offsets.to_numpy().astype(np.int64)
        child = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        offsets = offsets - offsets[0]
        if pa.types.is_fixed_size_list(child.type):
            dim = child.type.list_size
            flat = child.values.slice(child.offset * dim, len(child) * dim).to_numpy(zero_copy_only=False)
            values = flat.reshape(len(child), dim)
        else:
            values = child.to_numpy(zero_copy_only=False)
        return cls(np.ascontiguousarray(values), offsets)

    @classmethod
    def from_groups(cls, owner: np.ndarray, count: int) -> "Ragged":
        """Row indices grouped by ``owner`` (owner[r] in 0..count-1): record i lists the rows
        owned by i, in row order (e.g. each caption's hard negatives)."""
        order = np.argsort(owner, kind="stable")
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.bincount(owner, minlength=count), out=offsets[1:])
        return cls(order.astype(np.int64), offsets)


def tensor(array: np.ndarray, float32: bool = False) -> torch.Tensor:
    source = torch.from_numpy(np.ascontiguousarray(array))
    if not float32 or source.dtype == torch.float32:
        return source
    # copy_ into a float32 tensor converts float16 ~5x faster than .float() / astype on this CPU.
    return torch.empty(source.shape, dtype=torch.float32).copy_(source)


def text_fields(rows: np.ndarray, ids: Ragged | None, states: Ragged | None) -> dict[str, torch.Tensor]:
    """``text_mask`` plus ``text_ids`` [B, T] int64 (PAD 0) or ``text_states`` [B, T, Dt] float32."""
    source = ids if ids is not None else states
    if source is None:
        raise ValueError("a batch needs token ids or token states")
    values, mask = source.gather(rows)
    out = {"text_mask": tensor(mask)}
    if ids is not None:
        out["text_ids"] = tensor(values.astype(np.int64, copy=False))
    else:
        out["text_states"] = tensor(values, float32=True)
    return out


def region_fields(image_rows: np.ndarray, features: Ragged, boxes: Ragged, sizes: np.ndarray) -> dict[str, torch.Tensor]:
    """Region features [B, N, Dv], boxes [B, N, 4], mask [B, N] and image_size [B, 2] (h, w)."""
    feats, mask = features.gather(image_rows)
    box, _ = boxes.gather(image_rows)
    return {
        "region_feats": tensor(feats, float32=True),
        "region_boxes": tensor(box, float32=True),
        "region_mask": tensor(mask),
        "image_size": tensor(sizes[image_rows], float32=True),
    }


def answer_scores(rows: np.ndarray, answer_ids: Ragged, scores: Ragged, num_answers: int) -> torch.Tensor:
    """Dense soft-score targets [B, A] from each question's (answer index, score) lists."""
    ids, missing = answer_ids.gather(rows)
    values, _ = scores.gather(rows)
    out = np.zeros((len(rows), num_answers), dtype=np.float32)
    r, c = np.nonzero(~missing)
    out[r, ids[r, c]] = values[r, c]
    return torch.from_numpy(out)


def negative_texts(
    rows: np.ndarray, negatives: Ragged, ids: Ragged | None, states: Ragged | None
) -> dict[str, torch.Tensor]:
    """ITM hard negatives of each row: ``neg_text_mask`` [B, K, T] (an all-padding row is an absent
    negative; K >= 1) with ``neg_text_ids`` [B, K, T] or ``neg_text_states`` [B, K, T, Dt]."""
    index, absent = negatives.gather(rows)  # [B, K] negative row numbers
    if index.shape[1] == 0:
        index, absent = np.zeros((len(rows), 1), np.int64), np.ones((len(rows), 1), bool)
    b, k = index.shape
    source = ids if ids is not None else states
    present = ~absent.reshape(-1)
    # Only present negatives are gathered: padded to the longest of them (at least 1 token).
    picked, picked_padding = source.gather(index.reshape(-1)[present])
    width = max(picked.shape[1], 1)
    values = np.zeros((b * k, width, *source.values.shape[1:]), source.values.dtype)
    mask = np.ones((b * k, width), bool)
    values[present, : picked.shape[1]] = picked
    mask[present, : picked.shape[1]] = picked_padding
    t = mask.shape[1]
    out = {"neg_text_mask": tensor(mask.reshape(b, k, t))}
    if ids is not None:
        out["neg_text_ids"] = tensor(values.reshape(b, k, t).astype(np.int64, copy=False))
    else:
        out["neg_text_states"] = tensor(values.reshape(b, k, t, -1), float32=True)
    return out


__all__ = ["Ragged", "answer_scores", "negative_texts", "region_fields", "tensor", "text_fields"]
