"""A config section naming a real data set, dispatched to the right loader."""
from __future__ import annotations

import json

import pytest

from mmsearch.config import ConfigError, load_config
from mmsearch.data.loaders import RealDataSource, load_real_split


def test_refcoco_source_picks_the_test_file_and_reads_records(tmp_path):
    folder = tmp_path / "refcocog"
    folder.mkdir()
    entry = {"tokens": ["the", "cat"], "file_name": "x.jpg", "image_id": 3, "split": "test",
             "bbox": [1, 2, 3, 4], "name": "cat", "height": 10, "width": 20}
    (folder / "test.json").write_text(json.dumps([entry]))
    source = load_config(RealDataSource, {"dataset": "refcocog", "annotations": str(tmp_path), "feature_root": "feats"})
    split = load_real_split(source, "test")
    assert split.name == "refcocog" and split.refs[0].target_box == (1.0, 2.0, 4.0, 6.0)


def test_karpathy_source_with_raw_images_and_custom_pattern(tmp_path):
    entry = {"filename": "77.jpg", "imgid": 0, "split": "val",
             "sentences": [{"raw": "A cat.", "tokens": ["a", "cat"], "sentid": 0, "imgid": 0}], "sentids": [0]}
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"images": [entry], "dataset": "flickr30k"}))
    source = load_config(
        RealDataSource,
        {"dataset": "flickr30k", "annotations": str(tmp_path / "dataset_flickr30k.json"), "image_root": "imgs",
         "image_pattern": "flickr/{stem}.jpg", "resolve_sizes": False},
    )
    split = load_real_split(source, "val")
    assert split.images["77"].path == "imgs/flickr/77.jpg" and split.captions[0].caption == "A cat."


@pytest.mark.parametrize(
    "data, message",
    [
        ({"dataset": "vqa_v2", "annotations": "a"}, "feature_root"),
        ({"dataset": "gqa", "annotations": "a", "feature_root": "f"}, "dataset"),
        ({"dataset": "vqa_v2", "annotations": "a", "feature_root": "f", "subsets": {"dev": "x"}}, "subsets"),
        ({"dataset": "vqa_v2", "annotations": "a", "feature_root": "f", "featur_root": "f"}, "unknown key"),
    ],
)
def test_invalid_sources_are_rejected(data, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RealDataSource, data)
