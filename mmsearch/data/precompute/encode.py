"""The two encoder stages of the precompute job, as callables over column batches.

Both are plain classes (no Ray): the local backend calls them in this process, and the Ray
backend wraps them in Ray Data actors (the encoder loads once per actor, in ``__init__``).
A stage takes a batch dict with a global row ``index`` and returns a batch dict with the same
``index`` and the encoded columns, already cast to the store dtype.

* :class:`ImageStage`: ``{"index", "record"}`` (pickled ``ImageRecord``) ->
  ``{"index", "image_h", "image_w", "features" (list of [N, Dv]), "boxes" (list of [N, 4]),
  "image" [B, Dv]}``. Images with proposals (scenes) or without (raw photos: the whole image
  plus a grid of cells) are rendered / opened *inside* the stage, cropped with
  :func:`~mmsearch.data.crops.crop_regions` and encoded by the frozen image encoder; for
  bottom-up-attention ``.npz`` records the features are read and copied (no encoder), and the
  whole-image latent is the mean of the region features.
* :class:`TextStage`: ``{"index", "text", "sentence" (bool: wants a sentence latent)}`` ->
  ``{"index", "token_ids" (list of int32 [T]), ["states" (list of [T, Dt])], ["sentence"
  [B, Dt]] (zeros where not wanted)}``. Token ids use the compact vocabulary; states and
  sentence latents come from the frozen text encoder (MiniLM), cut to the same ``max_tokens``.
"""
from __future__ import annotations

import pickle
from typing import Any, Sequence

import numpy as np
import torch

from mmsearch.data.records import ImageRecord

Batch = dict[str, Any]


def resolve_device(device: str) -> str:
    """``"auto"``: CUDA when this process sees a GPU, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def grid_boxes(width: int, height: int, grid: int) -> np.ndarray:
    """The whole image plus ``grid x grid`` equal cells, float32 [1 + grid^2, 4] pixels."""
    xs, ys = np.linspace(0.0, width, grid + 1), np.linspace(0.0, height, grid + 1)
    cells = [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(grid) for i in range(grid)]
    return np.asarray([(0.0, 0.0, float(width), float(height)), *cells], dtype=np.float32)


def _load_pixels(record: ImageRecord):
    if record.render is not None:
        return record.render().convert("RGB")
    if record.path is not None:
        from PIL import Image

        try:
            with Image.open(record.path) as image:
                return image.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(f"image {record.image_id!r}: file not found: {record.path}") from None
    raise ValueError(f"image {record.image_id!r} has no pixels (render or path) and no region file")


class ImageStage:
    """Region features and whole-image latents for a batch of pickled ``ImageRecord``s."""

    def __init__(
        self,
        encoder: str = "efficientnet_lite0",
        crop_size: int = 48,
        crop_context: float = 0.0,
        image_size: int = 224,
        grid: int = 3,
        batch_size: int = 128,
        dtype: str = "float16",
        device: str = "auto",
        needs_encoder: bool = True,
        regions: bool = True,
    ) -> None:
        self.crop_size, self.crop_context, self.grid = crop_size, crop_context, grid
        self.regions = regions  # False: only whole-image latents (no crops are cut or encoded)
        self.dtype = np.dtype(dtype)
        self.crops = self.whole = None
        if needs_encoder:  # region-file sources never touch the encoder
            from mmsearch.encoders import build_encoder

            where = resolve_device(device)
            self.crops = build_encoder(encoder, resolution=crop_size, batch_size=batch_size, device=where)
            self.whole = build_encoder(encoder, resolution=image_size, batch_size=batch_size, device=where)

    def _require_encoder(self, record: ImageRecord) -> None:
        if self.crops is None:
            raise ValueError(f"image {record.image_id!r} needs the image encoder, but the stage was built without it")

    def __call__(self, batch: Batch) -> Batch:
        from mmsearch.data.crops import crop_regions
        from mmsearch.data.loaders.bua import read_bua_npz

        records: list[ImageRecord] = [pickle.loads(bytes(raw)) for raw in batch["record"]]
        n = len(records)
        features: list[np.ndarray | None] = [None] * n
        boxes: list[np.ndarray] = [np.zeros((0, 4), np.float32)] * n
        sizes = np.zeros((n, 2), dtype=np.int32)
        wholes: list[np.ndarray | None] = [None] * n
        pending, crops, pixels = [], [], []  # records to encode, their crops and whole images
        for i, record in enumerate(records):
            if record.region_file is not None:
                found = read_bua_npz(record.region_file)
                if not len(found.features):
                    raise ValueError(f"image {record.image_id!r}: region file {record.region_file} holds no regions")
                features[i], boxes[i] = found.features, found.boxes
                sizes[i] = (found.image_h, found.image_w)
                wholes[i] = found.features.mean(axis=0)
                continue
            self._require_encoder(record)
            image = _load_pixels(record)
            sizes[i] = (image.height, image.width)
            if self.regions:
                proposals = record.proposals if record.proposals is not None else grid_boxes(image.width, image.height, self.grid)
                boxes[i] = np.asarray(proposals, dtype=np.float32).reshape(-1, 4)
            crops.append(crop_regions(image, boxes[i], self.crop_size, self.crop_context))
            pixels.append(image)
            pending.append(i)
        if pending:
            encoded = self.crops.encode(torch.cat(crops)).numpy() if self.regions else np.zeros((0, self.crops.info.dim), np.float32)
            whole = self.whole.encode(pixels).numpy()
            counts = np.cumsum([0] + [len(c) for c in crops])
            for k, i in enumerate(pending):
                features[i] = encoded[counts[k] : counts[k + 1]]
                wholes[i] = whole[k]
        dim = next(f.shape[1] for f in features if f is not None)
        empty = [records[i].image_id for i in range(n) if features[i] is None or len(features[i]) == 0]
        if empty and self.regions:
            raise ValueError(f"images without any region: {empty[:5]}")
        return {
            "index": np.asarray(batch["index"], dtype=np.int64),
            "image_h": sizes[:, 0].copy(),
            "image_w": sizes[:, 1].copy(),
            "features": [f.astype(self.dtype) for f in features],
            "boxes": boxes,
            "image": np.stack([w.reshape(dim) for w in wholes]).astype(self.dtype),
        }


class TextStage:
    """Compact token ids, optional per-token states and sentence latents for a batch of texts."""

    def __init__(
        self,
        vocab_tokens: Sequence[str],
        encoder: str = "minilm",
        states: bool = False,
        sentence: bool = True,
        max_tokens: int = 32,
        batch_size: int = 128,
        dtype: str = "float16",
        device: str = "auto",
    ) -> None:
        from mmsearch.data.text import Vocabulary

        self.vocab = Vocabulary(list(vocab_tokens))
        self.states, self.sentence, self.max_tokens = states, sentence, max_tokens
        self.dtype = np.dtype(dtype)
        self.encoder = None
        if states or sentence:
            from mmsearch.encoders import build_encoder

            self.encoder = build_encoder(encoder, batch_size=batch_size, device=resolve_device(device))

    def __call__(self, batch: Batch) -> Batch:
        texts = [str(t) for t in batch["text"]]
        pieces = self.vocab.tokenizer.ids(texts, self.max_tokens)
        empty = [texts[i] for i, p in enumerate(pieces) if not p]
        if empty:
            raise ValueError(f"texts without any WordPiece token: {empty[:3]!r}")
        out: Batch = {
            "index": np.asarray(batch["index"], dtype=np.int64),
            "token_ids": [self.vocab.compact_ids(np.asarray(p)).astype(np.int32) for p in pieces],
        }
        if self.encoder is None:
            return out
        dim = self.encoder.info.dim
        wanted = np.asarray(batch["sentence"], dtype=bool) if self.sentence else np.zeros(len(texts), bool)
        sentence = np.zeros((len(texts), dim), dtype=np.float32)
        if self.states:
            encoded = self.encoder.encode(texts, max_tokens=self.max_tokens)
            lengths = (~encoded.mask).sum(dim=1).numpy()
            states = encoded.states.numpy()
            out["states"] = [states[i, : lengths[i]].astype(self.dtype) for i in range(len(texts))]
            sentence[wanted] = encoded.pooled.numpy()[wanted]
        elif wanted.any():
            sentence[wanted] = self.encoder.embed([t for t, w in zip(texts, wanted) if w], max_tokens=self.max_tokens).numpy()
        if self.sentence:
            out["sentence"] = sentence.astype(self.dtype)
        return out


__all__ = ["ImageStage", "TextStage", "grid_boxes", "resolve_device"]
