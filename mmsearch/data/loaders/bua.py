"""Bottom-up-attention region features: one ``.npz`` per image with ``x``, ``bbox``, ``image_h``, ``image_w``.

``x`` holds the region features and ``bbox`` the boxes in pixels (x1, y1, x2, y2). MMnas's files
(and the common bottom-up-attention extractors) store ``x`` as ``[D, N]``; it is transposed to
``[N, D]`` here. ``[N, D]`` files are accepted too: the orientation is decided by matching the
number of boxes N (and ``feature_dim`` when given); when both axes equal N, ``[D, N]`` is assumed.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

REQUIRED_KEYS = ("x", "bbox", "image_h", "image_w")


class RegionFeatures(NamedTuple):
    features: np.ndarray  # float32 [N, D]
    boxes: np.ndarray  # float32 [N, 4], pixels x1 y1 x2 y2
    image_h: int  # pixels
    image_w: int  # pixels


class RegionFileError(ValueError):
    """A region-feature file is malformed; the message names the file and the problem."""


def _open(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"region feature file not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise RegionFileError(f"{path}: not a readable .npz file ({exc})") from None


def _scalar_size(data, key: str, path: Path) -> int:
    value = np.asarray(data[key])
    if value.size != 1 or not np.isfinite(value).all() or float(value.reshape(-1)[0]) <= 0:
        raise RegionFileError(f"{path}: {key!r} must be one positive number, got {value!r}")
    return int(value.reshape(-1)[0])


def read_bua_image_size(path: str | Path) -> tuple[int, int]:
    """Only ``(image_h, image_w)`` of a region file (reads two tiny members, not the features)."""
    path = Path(path)
    with _open(path) as data:
        missing = [k for k in ("image_h", "image_w") if k not in data.files]
        if missing:
            raise RegionFileError(f"{path}: missing keys {missing} (has {sorted(data.files)})")
        return _scalar_size(data, "image_h", path), _scalar_size(data, "image_w", path)


def read_bua_npz(path: str | Path, feature_dim: int | None = None) -> RegionFeatures:
    """Features [N, D] float32, boxes [N, 4] float32 pixels, image height and width of one image."""
    path = Path(path)
    with _open(path) as data:
        missing = [k for k in REQUIRED_KEYS if k not in data.files]
        if missing:
            raise RegionFileError(f"{path}: missing keys {missing} (has {sorted(data.files)})")
        x = np.asarray(data["x"])
        boxes = np.asarray(data["bbox"])
        image_h = _scalar_size(data, "image_h", path)
        image_w = _scalar_size(data, "image_w", path)

    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise RegionFileError(f"{path}: 'bbox' must have shape [N, 4], got {boxes.shape}")
    if x.ndim != 2:
        raise RegionFileError(f"{path}: 'x' must be 2-D ([D, N] or [N, D]), got shape {x.shape}")
    n = boxes.shape[0]
    if x.shape[1] == n and (feature_dim is None or x.shape[0] == feature_dim):
        features = x.T  # MMnas / bottom-up-attention layout [D, N]
    elif x.shape[0] == n and (feature_dim is None or x.shape[1] == feature_dim):
        features = x
    else:
        expected = f"[{feature_dim or 'D'}, {n}] or [{n}, {feature_dim or 'D'}]"
        raise RegionFileError(f"{path}: 'x' has shape {x.shape}, but 'bbox' has {n} boxes; expected {expected}")
    if not np.issubdtype(features.dtype, np.number) or not np.issubdtype(boxes.dtype, np.number):
        raise RegionFileError(f"{path}: 'x' and 'bbox' must be numeric, got {features.dtype} and {boxes.dtype}")
    features = np.ascontiguousarray(features, dtype=np.float32)
    boxes = np.ascontiguousarray(boxes, dtype=np.float32)
    if not np.isfinite(features).all():
        raise RegionFileError(f"{path}: 'x' contains NaN or infinite values")
    if not np.isfinite(boxes).all():
        raise RegionFileError(f"{path}: 'bbox' contains NaN or infinite values")
    return RegionFeatures(features, boxes, image_h, image_w)
