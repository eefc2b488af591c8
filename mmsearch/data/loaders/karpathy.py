"""Flickr30K and COCO captions in Karpathy's split JSON (``dataset_flickr30k.json`` / ``dataset_coco.json``).

Layout: ``{"images": [{"filename", "imgid", "split": train|val|test|restval, "sentences":
[{"raw", "tokens", "sentid", "imgid"}], "sentids", "filepath" (COCO), "cocoid" (COCO)}],
"dataset": ...}``, usually 5 captions per image. ``restval`` (30k COCO val images set aside
for training) joins ``train`` unless ``restval_into_train=False``, when it is left out.

Image ids are COCO ids for COCO (so they join VQA and RefCOCO files) and the Flickr photo id
(file name without extension) for Flickr30K. Region file and image paths are patterns with the
fields ``filename``, ``stem``, ``filepath``, ``image_id`` and ``imgid``.
"""
from __future__ import annotations

from pathlib import Path

from mmsearch.data.loaders.fields import RecordError, field, format_path, image_record
from mmsearch.data.loaders.json_stream import iter_json_array
from mmsearch.data.records import CaptionRecord, DatasetSplit, ImageRecord, Split

KARPATHY_SPLITS = ("train", "val", "test", "restval")
REGION_PATTERNS = {"coco": "{filepath}/{filename}.npz", "flickr30k": "{filename}.npz"}
IMAGE_PATTERNS = {"coco": "{filepath}/{filename}", "flickr30k": "{filename}"}


def dataset_name_of(path: Path) -> str:
    """``dataset_coco.json`` -> ``coco``; ``dataset_flickr30k.json`` -> ``flickr30k``."""
    stem = path.stem
    return stem[len("dataset_") :] if stem.startswith("dataset_") else stem


def load_karpathy(
    json_path: str | Path,
    split: Split,
    *,
    name: str | None = None,
    feature_root: str | Path | None = None,
    image_root: str | Path | None = None,
    region_pattern: str | None = None,
    image_pattern: str | None = None,
    restval_into_train: bool = True,
    captions_per_image: int | None = None,
    resolve_sizes: bool = True,
) -> DatasetSplit:
    """The images and captions of one Karpathy split as a ``DatasetSplit``.

    ``name`` defaults to the data set in the file name (``coco``, ``flickr30k``), which also
    picks the default path patterns. ``captions_per_image`` keeps only the first k captions (a
    few COCO images have 6 or 7). Sizes as in ``load_vqa_v2``.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    json_path = Path(json_path)
    name = name or dataset_name_of(json_path)
    if feature_root is None and image_root is None:
        raise ValueError("load_karpathy needs feature_root (region .npz files) or image_root (raw images)")
    if captions_per_image is not None and captions_per_image < 1:
        raise ValueError(f"captions_per_image must be >= 1, got {captions_per_image}")
    wanted = {split} | ({"restval"} if split == "train" and restval_into_train else set())

    images: dict[str, ImageRecord] = {}
    captions: list[CaptionRecord] = []
    for i, entry in enumerate(iter_json_array(json_path, "images")):
        where = f"{json_path} images[{i}]"
        entry_split = field(entry, "split", str, where)
        if entry_split not in KARPATHY_SPLITS:
            raise RecordError(f"{where}: field 'split' must be one of {KARPATHY_SPLITS}, got {entry_split!r}")
        if entry_split not in wanted:
            continue
        filename = field(entry, "filename", str, where)
        filepath = field(entry, "filepath", str, where) if "filepath" in entry else ""
        image_id = str(field(entry, "cocoid", int, where)) if "cocoid" in entry else Path(filename).stem
        if image_id in images:
            raise RecordError(f"{where}: image {image_id!r} appears twice")
        sentences = field(entry, "sentences", list, where)
        if not sentences:
            raise RecordError(f"{where}: field 'sentences' is empty")
        for j, sentence in enumerate(sentences[:captions_per_image]):
            at = f"{where}.sentences[{j}]"
            raw = field(sentence, "raw", str, at).strip()
            if not raw:
                raise RecordError(f"{at}: field 'raw' is empty")
            captions.append(CaptionRecord(str(field(sentence, "sentid", int, at)), image_id, raw))
        names = {
            "filename": filename,
            "stem": Path(filename).stem,
            "filepath": filepath,
            "image_id": image_id,
            "imgid": entry.get("imgid"),
        }
        fallback = "coco" if filepath else "flickr30k"
        images[image_id] = image_record(
            image_id,
            region_file=(
                format_path(feature_root, region_pattern or REGION_PATTERNS.get(name, REGION_PATTERNS[fallback]), **names)
                if feature_root is not None
                else None
            ),
            path=(
                format_path(image_root, image_pattern or IMAGE_PATTERNS.get(name, IMAGE_PATTERNS[fallback]), **names)
                if image_root is not None
                else None
            ),
            resolve_sizes=resolve_sizes,
        )
    if not images:
        raise RecordError(f"{json_path}: no images in split {split!r}")
    return DatasetSplit(name=name, split=split, images=images, captions=captions)
