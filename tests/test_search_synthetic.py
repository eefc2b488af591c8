"""The synthetic TaskData: protocol, determinism, disjoint parts, and that its targets are what
an independent reading of the batch tensors (features -> attributes, boxes -> relations) gives."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsearch.data.synthetic import COLORS, OPPOSITE, SHAPES, VOCAB, SyntheticTaskData
from mmsearch.data.task_data import TaskData, TaskDataConfig

TASKS = ("vqa", "itm", "vg")


@pytest.fixture(scope="module")
def datasets() -> dict[str, SyntheticTaskData]:
    return {task: SyntheticTaskData(task, train_images=40, val_images=20, test_images=20) for task in TASKS}


def _ids(data: SyntheticTaskData, part: str, **kwargs) -> list[str]:
    return [sid for batch in data.batches(part, batch_size=7, **kwargs) for sid in batch.meta["sample_id"]]


def _images(data: SyntheticTaskData, part: str) -> set[str]:
    return {iid for batch in data.batches(part, batch_size=16, shuffle=False) for iid in batch.meta["image_id"]}


@pytest.mark.parametrize("task", TASKS)
def test_protocol_and_disjoint_parts(datasets, task):
    data = datasets[task]
    assert isinstance(data, TaskData)
    assert data.info.task == task and data.info.vocab_size == len(VOCAB)
    weights, arch, train = set(_ids(data, "weights")), set(_ids(data, "arch")), set(_ids(data, "train"))
    assert weights and arch and not weights & arch and weights | arch == train
    assert not _images(data, "weights") & _images(data, "arch")  # divided by image
    assert not {i.split("/")[0] for i in _images(data, "val")} & {"train"}
    for part in ("weights", "arch", "train", "val", "test"):
        assert data.num_samples(part) == len(_ids(data, part))
    assert abs(len(_images(data, "arch")) - 0.2 * 40) <= 1


def test_order_is_a_pure_function_of_seed_and_epoch(datasets):
    data = datasets["vqa"]
    first = _ids(data, "weights", epoch=3, seed=5)
    assert first == _ids(data, "weights", epoch=3, seed=5)
    assert first != _ids(data, "weights", epoch=4, seed=5) and first != _ids(data, "weights", epoch=3, seed=6)
    assert sorted(first) == sorted(_ids(data, "weights", epoch=4, seed=5))
    again = SyntheticTaskData("vqa", train_images=40, val_images=20, test_images=20)
    a = next(data.batches("val", batch_size=9, shuffle=False))
    b = next(again.batches("val", batch_size=9, shuffle=False))
    assert torch.equal(a.region_feats, b.region_feats) and torch.equal(a.text_ids, b.text_ids)


def test_batches_are_dynamically_padded_and_drop_last(datasets):
    data = datasets["itm"]
    sizes = [b.batch_size for b in data.batches("weights", batch_size=10, drop_last=True)]
    assert sizes and set(sizes) == {10} and len(sizes) == data.num_samples("weights") // 10
    for batch in data.batches("weights", batch_size=5, shuffle=False):
        assert (~batch.text_mask).sum(1).max() == batch.text_mask.shape[1]  # no all-padding column
        assert (~batch.region_mask).sum(1).max() == batch.region_mask.shape[1]
        assert batch.text_ids.masked_select(batch.text_mask).eq(0).all()
        assert batch.targets["neg_text_ids"].shape == (batch.batch_size, 1, batch.text_mask.shape[1])


def test_limits_and_bad_arguments():
    data = SyntheticTaskData.from_config(TaskDataConfig(task="vg", limit={"weights": 5, "val": 3}), train_images=20, val_images=10, test_images=5)
    assert data.num_samples("weights") == 5 and data.num_samples("val") == 3
    with pytest.raises(ValueError, match="unknown part 'dev'"):
        next(data.batches("dev", batch_size=2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown task"):
        SyntheticTaskData("captioning")  # type: ignore[arg-type]


# --- the signal: targets re-derived from the tensors alone -----------------------------------
def _read_scene(data: SyntheticTaskData, batch, row: int) -> list[tuple[int, int, np.ndarray]]:
    """(color, shape, centre) of every object region: the nearest colour+shape embedding sum;
    clutter regions (pure noise) are far from all of them."""
    sums = data.color_embeddings[:, None, :] + data.shape_embeddings[None, :, :]  # [C, S, D]
    objects = []
    for feat, box, pad in zip(batch.region_feats[row].numpy(), batch.region_boxes[row].numpy(), batch.region_mask[row].numpy()):
        if pad:
            continue
        dist = np.linalg.norm(sums - feat, axis=-1)
        color, shape = np.unravel_index(dist.argmin(), dist.shape)
        if dist.min() < 0.5 * np.sqrt(feat.shape[0]):
            objects.append((int(color), int(shape), (box[:2] + box[2:]) / 2))
    return objects


def _holds(relation: str, a: np.ndarray, b: np.ndarray, margin: float = 4.0) -> bool:
    return {"left": a[0] < b[0] - margin, "right": a[0] > b[0] + margin, "above": a[1] < b[1] - margin, "below": a[1] > b[1] + margin}[relation]


def _words(batch, row: int, key: str = "text_ids") -> list[str]:
    ids = batch.text_ids[row] if key == "text_ids" else batch.targets[key][row, 0]
    return [VOCAB[i] for i in ids.tolist() if i]


def _vqa_answer(words: list[str], scene) -> str:
    if words[:2] == ["how", "many"]:
        return str(sum(c == COLORS.index(words[2]) for c, _, _ in scene))
    if words[:2] == ["is", "there"]:
        color, shape = COLORS.index(words[3]), SHAPES.index(words[4])
        return "yes" if any(c == color and s == shape for c, s, _ in scene) else "no"
    anchor = next(o for o in scene if o[1] == SHAPES.index(words[-1]))
    if len(words) == 5:  # what color is the <shape>
        return COLORS[anchor[0]]
    others = [o for o in scene if o is not anchor and _holds(words[5], o[2], anchor[2])]
    return COLORS[min(others, key=lambda o: float(np.linalg.norm(o[2] - anchor[2])))[0]]


def test_vqa_answers_follow_from_features_and_boxes(datasets):
    data = datasets["vqa"]
    checked = {}
    for batch in data.batches("train", batch_size=16, shuffle=False):
        for row in range(batch.batch_size):
            answer = data.answers[int(batch.targets["answer_scores"][row].argmax())]
            assert _vqa_answer(_words(batch, row), _read_scene(data, batch, row)) == answer
            checked[batch.meta["family"][row]] = checked.get(batch.meta["family"][row], 0) + 1
    assert set(checked) == {"query", "relate", "exist", "count"}


def test_itm_captions_are_true_and_hard_negatives_false(datasets):
    data = datasets["itm"]
    for batch in data.batches("val", batch_size=16, shuffle=False):
        for row in range(batch.batch_size):
            scene, words, negative = _read_scene(data, batch, row), _words(batch, row), _words(batch, row, "neg_text_ids")
            assert negative == words[:2] + [OPPOSITE[words[2]]] + words[3:]
            a = [o for o in scene if (COLORS[o[0]], SHAPES[o[1]]) == tuple(words[:2])]
            b = [o for o in scene if (COLORS[o[0]], SHAPES[o[1]]) == tuple(words[5:7])]
            assert any(x is not y and not _holds(OPPOSITE[words[2]], x[2], y[2]) for x in a for y in b)


def test_vg_ground_truth_matches_one_proposal(datasets):
    from mmsearch.metrics.boxes import box_iou

    for batch in datasets["vg"].batches("train", batch_size=16, shuffle=False):
        iou = box_iou(batch.region_boxes, batch.targets["gt_box"].unsqueeze(1)).squeeze(-1).masked_fill(batch.region_mask, 0)
        assert (iou.max(dim=1).values > 0.7).all()


def test_vqa_families_can_be_restricted():
    data = SyntheticTaskData("vqa", train_images=30, val_images=5, test_images=5, vqa_families=("query", "relate"))
    families = {f for b in data.batches("train", batch_size=64) for f in b.meta["family"]}
    assert {"query", "relate"} <= families <= {"query", "relate", "exist"}  # exist: scenes that allow neither
    with pytest.raises(ValueError, match="vqa_families"):
        SyntheticTaskData("vqa", vqa_families=("color",))
