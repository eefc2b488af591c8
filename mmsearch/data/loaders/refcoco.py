"""RefCOCO / RefCOCO+ / RefCOCOg as converted per-sentence JSON (MMnas's ``tools/ref_process*.py``).

``<root>/<dataset>/<split_file>.json`` is a list with one entry per referring sentence:
``{tokens, file_name, image_id, split, bbox: [x, y, w, h], name, height, width}``. Split files
are ``train``, ``val``, ``testA``, ``testB`` (RefCOCO, RefCOCO+) and ``test`` (RefCOCOg, umd).
Boxes become pixel ``(x1, y1, x2, y2) = (x, y, x + w, y + h)``; the expression is the tokens
joined by spaces. All images come from COCO train2014, so region files default to
``COCO_train2014_<12-digit image id>.jpg.npz`` directly under ``feature_root`` (MMnas's layout).
"""
from __future__ import annotations

import math
from pathlib import Path

from mmsearch.data.loaders.fields import RecordError, field, format_path, image_record
from mmsearch.data.loaders.json_stream import iter_json_array
from mmsearch.data.records import DatasetSplit, ImageRecord, RefRecord, Split

DATASETS = ("refcoco", "refcoco+", "refcocog")
SPLIT_OF_FILE: dict[str, Split] = {"train": "train", "val": "val", "test": "test", "testA": "test", "testB": "test"}
REGION_PATTERN = "COCO_train2014_{image_id:012d}.jpg.npz"
IMAGE_PATTERN = "COCO_train2014_{image_id:012d}.jpg"


def refcoco_path(root: str | Path, dataset: str, split_file: str) -> Path:
    return Path(root) / dataset / f"{split_file}.json"


def xywh_to_xyxy(box: list[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in box)
    return (x, y, x + w, y + h)


def load_refcoco(
    root: str | Path,
    dataset: str,
    split_file: str,
    *,
    feature_root: str | Path | None = None,
    image_root: str | Path | None = None,
    region_pattern: str = REGION_PATTERN,
    image_pattern: str = IMAGE_PATTERN,
) -> DatasetSplit:
    """One split file as a ``DatasetSplit``; testA/testB are named ``<dataset>-testA`` etc.

    Image sizes come from the records (no file is opened here).
    """
    if split_file not in SPLIT_OF_FILE:
        raise ValueError(f"unknown split file {split_file!r}; known: {sorted(SPLIT_OF_FILE)}")
    if feature_root is None and image_root is None:
        raise ValueError("load_refcoco needs feature_root (region .npz files) or image_root (raw images)")
    path = refcoco_path(root, dataset, split_file)
    images: dict[str, ImageRecord] = {}
    refs: list[RefRecord] = []
    for i, entry in enumerate(iter_json_array(path)):
        where = f"{path} [{i}]"
        tokens = field(entry, "tokens", list, where)
        if not tokens or not all(isinstance(t, str) for t in tokens):
            raise RecordError(f"{where}: field 'tokens' must be a non-empty list of strings")
        image_id = field(entry, "image_id", (int, str), where)
        if isinstance(image_id, str) and not image_id.isdigit():
            raise RecordError(f"{where}: field 'image_id' must be a COCO image id (digits), got {image_id!r}")
        bbox = field(entry, "bbox", list, where)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise RecordError(f"{where}: field 'bbox' must be 4 numbers [x, y, w, h], got {bbox!r}")
        if not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
            raise RecordError(f"{where}: field 'bbox' must be finite with w, h >= 0, got {bbox!r}")
        height = field(entry, "height", int, where)
        width = field(entry, "width", int, where)
        if height <= 0 or width <= 0:
            raise RecordError(f"{where}: image size must be positive, got height={height} width={width}")
        key = str(image_id)
        if key not in images:
            names = {"image_id": int(image_id), "file_name": entry.get("file_name", "")}
            images[key] = image_record(
                key,
                region_file=format_path(feature_root, region_pattern, **names) if feature_root is not None else None,
                path=format_path(image_root, image_pattern, **names) if image_root is not None else None,
                height=height,
                width=width,
            )
        elif (images[key].height, images[key].width) != (height, width):
            raise RecordError(f"{where}: image {key} has size {height}x{width} here but {images[key].height}x{images[key].width} before")
        ref_id = entry.get("sent_id", entry.get("ref_id", i))
        refs.append(
            RefRecord(
                ref_id=f"{dataset}/{split_file}/{ref_id}",
                image_id=key,
                expression=" ".join(tokens),
                target_box=xywh_to_xyxy(bbox),
                family=str(entry.get("name", "")),
            )
        )
    if not refs:
        raise RecordError(f"{path}: no referring expressions")
    name = dataset if split_file in ("train", "val", "test") else f"{dataset}-{split_file}"
    return DatasetSplit(name=name, split=SPLIT_OF_FILE[split_file], images=images, refs=refs)
