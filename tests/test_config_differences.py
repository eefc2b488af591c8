"""Which config changes a resumed run refuses (mmsearch.recipes.resolve.config_differences)."""
from mmsearch.recipes.resolve import config_differences


def test_a_changed_or_removed_key_is_a_difference_a_key_added_later_is_not():
    saved = {"data": {"task": "vqa", "limit": {"train": 10}}, "train": {"epochs": 3}}
    assert config_differences(saved, saved, ()) == []
    newer = {"data": {"task": "vqa", "limit": {"train": 10}, "regions": "memory"}, "train": {"epochs": 5}}
    assert config_differences(saved, newer, ("train.epochs",)) == []  # regions: added after the checkpoint
    assert config_differences(saved, newer, ()) == ["train.epochs: 3 -> 5"]
    assert config_differences(saved, {"data": {"task": "vg"}, "train": {"epochs": 3}}, ("data.limit.",)) == ["data.task: 'vqa' -> 'vg'"]
    assert config_differences(saved, {"train": {"epochs": 3}}, ()) == ["data.limit.train: 10 -> None", "data.task: 'vqa' -> None"]
