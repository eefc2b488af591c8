"""One config section that names a real data set on disk, and one call that loads a split of it.

YAML example (VQA-v2 with bottom-up-attention features, MMnas's folder layout)::

    source:
      dataset: vqa_v2
      annotations: data/vqa/annotations        # the question/annotation JSON files
      feature_root: data/vqa/bua-r101-max100   # <image_dir>/COCO_<image_dir>_<id>.jpg.npz
      subsets: {test: test-dev2015}            # optional: file split per split

``annotations`` is the folder of the VQA-v2 JSON files, the Karpathy ``dataset_*.json`` file,
or the folder that holds ``<dataset>/<split>.json`` for RefCOCO/+/g. ``subsets`` maps a split
to its file split (VQA: ``train2014``...; RefCOCO: ``testA``/``testB``/``test``).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmsearch.config import config_dataclass
from mmsearch.data.loaders.karpathy import load_karpathy
from mmsearch.data.loaders.refcoco import load_refcoco
from mmsearch.data.loaders.vqa_v2 import load_vqa_v2
from mmsearch.data.records import DatasetSplit, Split

RealDataset = Literal["vqa_v2", "flickr30k", "coco", "refcoco", "refcoco+", "refcocog"]
REFCOCO_TEST_FILE = {"refcoco": "testA", "refcoco+": "testA", "refcocog": "test"}


@config_dataclass
class RealDataSource:
    dataset: RealDataset
    annotations: str
    feature_root: str | None = None  # bottom-up-attention .npz files
    image_root: str | None = None  # raw images (cropped and encoded by the frozen image encoder)
    region_pattern: str | None = None  # None: the data set's standard layout
    image_pattern: str | None = None
    subsets: dict[str, str] = Field(default_factory=dict)
    restval_into_train: bool = True  # Karpathy COCO: train on train + restval
    captions_per_image: int | None = None  # Karpathy: keep the first k captions per image
    resolve_sizes: bool = True  # open each region file / image header for its size (proves it exists)
    # VQA-v2 val/test answer scores: "normalized" (default: human answers normalised like the
    # prediction) or "official" (the official vqaEval.py: human answers only de-punctuated, and only
    # when they disagree; numbers comparable with published ones). Training targets stay normalised.
    eval_answers: Literal["normalized", "official"] = "normalized"

    def __post_init__(self) -> None:
        if self.feature_root is None and self.image_root is None:
            raise ValueError("source needs feature_root (region .npz files) or image_root (raw images)")
        unknown = set(self.subsets) - {"train", "val", "test"}
        if unknown:
            raise ValueError(f"source.subsets keys must be train/val/test, got {sorted(unknown)}")


def load_real_split(source: RealDataSource, split: Split) -> DatasetSplit:
    """The ``split`` of the data set ``source`` names, as ``DatasetSplit`` records."""
    patterns = {
        key: value
        for key, value in (("region_pattern", source.region_pattern), ("image_pattern", source.image_pattern))
        if value is not None
    }
    roots = {"feature_root": source.feature_root, "image_root": source.image_root}
    if source.dataset == "vqa_v2":
        return load_vqa_v2(
            source.annotations, split, subset=source.subsets.get(split), resolve_sizes=source.resolve_sizes,
            answer_processing="normalized" if split == "train" else source.eval_answers, **roots, **patterns,
        )
    if source.dataset in ("flickr30k", "coco"):
        return load_karpathy(
            source.annotations,
            split,
            name=source.dataset,
            restval_into_train=source.restval_into_train,
            captions_per_image=source.captions_per_image,
            resolve_sizes=source.resolve_sizes,
            **roots,
            **patterns,
        )
    split_file = source.subsets.get(split) or (REFCOCO_TEST_FILE[source.dataset] if split == "test" else split)
    return load_refcoco(source.annotations, source.dataset, split_file, **roots, **patterns)
