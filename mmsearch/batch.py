"""The tensor contract between the data layer and the models (supernet, derived nets, heads).

Models never see files, stores or Ray objects: they take a :class:`MultimodalBatch`. The data
layer (``mmsearch.data``) builds batches; components only read them.

Conventions (all tensors on one device):
  * masks are boolean with ``True`` marking *padding* (as MMnas's masks);
  * boxes are pixels ``(x1, y1, x2, y2)``; ``image_size`` holds ``(height, width)`` in pixels;
  * the text stream is the encoder input, the region stream the decoder input (MMnas/MCAN layout).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import torch


@dataclass
class MultimodalBatch:
    # Text: learned-embedding token ids and/or frozen-encoder per-token states.
    text_mask: torch.Tensor  # [B, T] bool, True = padding
    text_ids: torch.Tensor | None = None  # [B, T] int64, 0 = PAD
    text_states: torch.Tensor | None = None  # [B, T, Dt] float
    # Image regions (bottom-up-attention layout).
    region_feats: torch.Tensor | None = None  # [B, N, Dv] float
    region_boxes: torch.Tensor | None = None  # [B, N, 4] float, pixels x1 y1 x2 y2
    region_mask: torch.Tensor | None = None  # [B, N] bool, True = padding
    image_size: torch.Tensor | None = None  # [B, 2] float, (height, width) pixels
    # Task targets, keyed by name (see mmsearch.heads for which head reads which key):
    #   vqa: "answer_scores" [B, A] soft scores in [0, 1]
    #   itm: "match" [B] float {0, 1} (optional); data-set hard negative captions as
    #        "neg_text_mask" [B, K, T] bool (an all-padding row = no negative) with
    #        "neg_text_ids" [B, K, T] and/or "neg_text_states" [B, K, T, Dt]
    #   vg:  "gt_box" [B, 4] pixels (IoU with region_boxes is computed by the head)
    # meta keys read by heads/metrics: "image_id" (ITM: never pair a caption with its own
    # image as a negative), "answer_type" and "family" (per-type accuracy), "question_id".
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    # Per-sample bookkeeping that never reaches the model (ids, answer types, ...).
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.text_mask.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "MultimodalBatch":
        def move(x: Any) -> Any:
            return x.to(device, non_blocking=non_blocking) if isinstance(x, torch.Tensor) else x

        changes = {f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in ("targets", "meta")}
        return MultimodalBatch(**changes, targets={k: move(v) for k, v in self.targets.items()}, meta=self.meta)

    def with_float_dtype(self, dtype: torch.dtype) -> "MultimodalBatch":
        """The model inputs' floating tensors (features, states, boxes, image sizes) in ``dtype``;
        masks, ids, targets and meta as they are. For models whose weights are in 16 bits without autocast."""
        def cast(x: Any) -> Any:
            return x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x

        changes = {f.name: cast(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in ("targets", "meta")}
        return MultimodalBatch(**changes, targets=self.targets, meta=self.meta)

    def select(self, index: torch.Tensor) -> "MultimodalBatch":
        """Rows ``index`` of every per-sample tensor (and list in ``meta``)."""

        def take(x: Any) -> Any:
            if isinstance(x, torch.Tensor):
                return x[index.to(x.device)]
            if isinstance(x, list):
                return [x[int(i)] for i in index.tolist()]
            return x

        changes = {f.name: take(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in ("targets", "meta")}
        return MultimodalBatch(
            **changes,
            targets={k: take(v) for k, v in self.targets.items()},
            meta={k: take(v) for k, v in self.meta.items()},
        )


def first_samples(batches: Iterable[MultimodalBatch], limit: int | None) -> Iterator[MultimodalBatch]:
    """The batches up to ``limit`` samples in all (the last one cut), or all of them."""
    seen = 0
    for batch in batches:
        if limit is not None and seen + batch.batch_size > limit:
            if limit > seen:
                yield batch.select(torch.arange(limit - seen))
            return
        seen += batch.batch_size
        yield batch
