"""RefCOCO / RefCOCO+ / RefCOCOg converted per-sentence JSON."""
from __future__ import annotations

import json

import pytest

from mmsearch.data.loaders import RecordError, load_refcoco


def sentence(image_id, bbox, tokens, name="person", height=427, width=640, split="train", **extra):
    return {
        "tokens": tokens,
        "file_name": f"COCO_train2014_{image_id:012d}_{len(tokens)}.jpg",
        "image_id": image_id,
        "split": split,
        "bbox": bbox,
        "name": name,
        "height": height,
        "width": width,
        **extra,
    }


@pytest.fixture
def ref_root(tmp_path):
    folder = tmp_path / "refs" / "refcoco+"
    folder.mkdir(parents=True)
    train = [
        sentence(581857, [103.93, 299.99, 134.22, 177.42], ["woman", "in", "front"]),
        sentence(581857, [0, 10, 50.5, 20], ["guy", "on", "left"]),
        sentence(1234, [5, 6, 7, 8], ["red", "car"], name="car", height=100, width=200),
    ]
    (folder / "train.json").write_text(json.dumps(train))
    test_a = [sentence(99, [1, 2, 3, 4], ["man", "right"], split="testA", sent_id=777)]
    (folder / "testA.json").write_text(json.dumps(test_a))
    return tmp_path / "refs"


def test_sentences_boxes_and_images(ref_root, tmp_path):
    split = load_refcoco(ref_root, "refcoco+", "train", feature_root=tmp_path / "bua")
    assert split.name == "refcoco+" and split.split == "train" and len(split.refs) == 3
    first, second, third = split.refs
    assert first.expression == "woman in front" and first.image_id == "581857"
    assert first.target_box == pytest.approx((103.93, 299.99, 238.15, 477.41))
    assert second.target_box == (0.0, 10.0, 50.5, 30.0)
    assert third.family == "car" and len({r.ref_id for r in split.refs}) == 3
    assert sorted(split.images) == ["1234", "581857"]
    image = split.images["581857"]
    assert (image.height, image.width) == (427, 640)
    assert image.region_file.endswith("bua/COCO_train2014_000000581857.jpg.npz")


def test_test_a_maps_to_test_with_its_own_name(ref_root, tmp_path):
    split = load_refcoco(ref_root, "refcoco+", "testA", image_root=tmp_path / "images")
    assert split.split == "test" and split.name == "refcoco+-testA"
    assert split.refs[0].ref_id == "refcoco+/testA/777"
    assert split.images["99"].path.endswith("images/COCO_train2014_000000000099.jpg")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bbox": [1, 2, 3]}, "field 'bbox' must be 4 numbers"),
        ({"bbox": [1, 2, -3, 4]}, "w, h >= 0"),
        ({"tokens": []}, "field 'tokens' must be a non-empty list"),
        ({"height": "427"}, "field 'height' must be int"),
        ({"image_id": "abc"}, "field 'image_id' must be a COCO image id"),
    ],
)
def test_malformed_records_name_the_field(tmp_path, change, message):
    folder = tmp_path / "refcocog"
    folder.mkdir()
    good = sentence(5, [1, 2, 3, 4], ["a", "cat"])
    (folder / "val.json").write_text(json.dumps([good, {**good, **change}]))
    with pytest.raises(RecordError, match=message) as info:
        load_refcoco(tmp_path, "refcocog", "val", feature_root=tmp_path)
    assert "val.json [1]" in str(info.value)


def test_missing_field_file_and_split(tmp_path, ref_root):
    folder = tmp_path / "refcoco"
    folder.mkdir()
    entry = sentence(5, [1, 2, 3, 4], ["a", "cat"])
    del entry["bbox"]
    (folder / "train.json").write_text(json.dumps([entry]))
    with pytest.raises(RecordError, match="missing field 'bbox'"):
        load_refcoco(tmp_path, "refcoco", "train", feature_root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"refcoco\+/val.json"):
        load_refcoco(ref_root, "refcoco+", "val", feature_root=tmp_path)
    with pytest.raises(ValueError, match="unknown split file 'testC'"):
        load_refcoco(ref_root, "refcoco+", "testC", feature_root=tmp_path)
