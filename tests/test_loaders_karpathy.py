"""Flickr30K and COCO captions in Karpathy's split JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmsearch.data.loaders import RecordError, load_karpathy


def sentences(image_index: int, n: int = 5) -> list[dict]:
    return [
        {"raw": f" A dog runs, take {k}. ", "tokens": ["a", "dog", "runs", "take", str(k)], "sentid": image_index * 10 + k, "imgid": image_index}
        for k in range(n)
    ]


def flickr_entry(index: int, photo_id: int, split: str) -> dict:
    return {"filename": f"{photo_id}.jpg", "imgid": index, "split": split, "sentences": sentences(index), "sentids": [index * 10 + k for k in range(5)]}


def coco_entry(index: int, cocoid: int, split: str, n_captions: int = 5) -> dict:
    folder = "train2014" if split in ("train", "restval") else "val2014"
    return {
        "filepath": folder,
        "filename": f"COCO_{folder}_{cocoid:012d}.jpg",
        "imgid": index,
        "split": split,
        "sentences": sentences(index, n_captions),
        "sentids": [index * 10 + k for k in range(n_captions)],
        "cocoid": cocoid,
    }


def write_npz(path, h=333, w=500):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=np.ones((8, 2), np.float32), bbox=np.array([[0, 0, 5, 5], [1, 1, 9, 9]], np.float32), image_h=h, image_w=w)


@pytest.fixture
def flickr(tmp_path):
    entries = [flickr_entry(0, 1000092795, "train"), flickr_entry(1, 10002456, "val"), flickr_entry(2, 1000268201, "test")]
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": entries, "dataset": "flickr30k"}))
    for entry in entries:
        write_npz(tmp_path / "feats" / f"{entry['filename']}.npz", h=300 + entry["imgid"])
    return path


@pytest.fixture
def coco(tmp_path):
    entries = [coco_entry(0, 391895, "train"), coco_entry(1, 522418, "restval", n_captions=7), coco_entry(2, 184613, "test")]
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    for entry in entries:
        write_npz(tmp_path / "coco_feats" / entry["filepath"] / f"{entry['filename']}.npz")
    return path


def test_flickr_splits_ids_captions_and_region_files(flickr):
    features = flickr.parent / "feats"
    train = load_karpathy(flickr, "train", feature_root=features)
    assert train.name == "flickr30k" and train.split == "train" and list(train.images) == ["1000092795"]
    assert len(train.captions) == 5 and train.captions[0].caption == "A dog runs, take 0."
    assert train.captions[3].caption_id == "3" and {c.image_id for c in train.captions} == {"1000092795"}
    assert train.images["1000092795"].region_file.endswith("feats/1000092795.jpg.npz")
    test = load_karpathy(flickr, "test", feature_root=features)
    assert list(test.images) == ["1000268201"] and test.images["1000268201"].height == 302
    assert [c.caption_id for c in test.captions] == ["20", "21", "22", "23", "24"]


def test_coco_restval_folds_into_train_and_uses_coco_ids(coco):
    features = coco.parent / "coco_feats"
    train = load_karpathy(coco, "train", feature_root=features)
    assert train.name == "coco" and sorted(train.images) == ["391895", "522418"]
    assert len(train.captions) == 12  # 5 + 7
    assert train.images["522418"].region_file.endswith("coco_feats/train2014/COCO_train2014_000000522418.jpg.npz")
    strict = load_karpathy(coco, "train", feature_root=features, restval_into_train=False, captions_per_image=5)
    assert list(strict.images) == ["391895"] and len(strict.captions) == 5
    capped = load_karpathy(coco, "train", feature_root=features, captions_per_image=5)
    assert len(capped.captions) == 10


def test_raw_images_get_sizes_from_headers(flickr, tmp_path):
    images = tmp_path / "flickr_images"
    images.mkdir()
    Image.new("RGB", (64, 48)).save(images / "1000092795.jpg")
    split = load_karpathy(flickr, "train", image_root=images, image_pattern="{stem}.jpg")
    record = split.images["1000092795"]
    assert (record.height, record.width) == (48, 64) and record.region_file is None


def test_errors(flickr, tmp_path):
    with pytest.raises(FileNotFoundError, match="1000092795.jpg.npz"):
        load_karpathy(flickr, "train", feature_root=tmp_path / "nothing")
    with pytest.raises(ValueError, match="unknown_field"):
        load_karpathy(flickr, "train", feature_root=tmp_path, region_pattern="{unknown_field}.npz")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_karpathy(tmp_path / "missing.json", "train", feature_root=tmp_path)
    bad = tmp_path / "dataset_bad.json"
    entry = flickr_entry(0, 1, "train")
    del entry["sentences"][2]["raw"]
    bad.write_text(json.dumps({"images": [entry], "dataset": "flickr30k"}))
    with pytest.raises(RecordError, match=r"images\[0\]\.sentences\[2\]: missing field 'raw'"):
        load_karpathy(bad, "train", feature_root=tmp_path, resolve_sizes=False)
    entry = flickr_entry(0, 1, "dev")
    bad.write_text(json.dumps({"images": [entry]}))
    with pytest.raises(RecordError, match="field 'split' must be one of"):
        load_karpathy(bad, "train", feature_root=tmp_path, resolve_sizes=False)
