"""VQA grounding supervision: the scenes name each answer's referents, the store and both data paths
carry their boxes, and the head's region attention can be taught to point at them."""
from __future__ import annotations

import pytest
import torch
from test_heads_common import HIDDEN, TinyNet, make_batch, task_overrides
from test_precompute_common import scene_records, shared_scenes
from test_scenes_oracle import dataset, scenes_by_id

from mmsearch.config import replace
from mmsearch.data.task_data import TaskDataConfig
from mmsearch.data.tasks import open_task_data
from mmsearch.heads import VQAHeadConfig, VQAObjective, evaluate_vqa
from mmsearch.heads.vqa import vqa_loss
from mmsearch.heads.vqa_grounding import grounding_loss, pointing_hits, referent_targets
from mmsearch.tasks import build_head
from mmsearch.tasks.data_sources import generated_scenes

@pytest.fixture(scope="module")
def scenes():
    cfg, splits = dataset()
    return splits, scenes_by_id(cfg, splits)


def test_every_scene_question_names_the_objects_its_answer_is_read_from(scenes):
    splits, by_id = scenes
    seen = set()
    for question in (q for part in splits.values() for q in part.vqa):
        scene = by_id[question.image_id]
        boxes = set(question.referent_boxes)
        assert boxes <= {o.box for o in scene.objects}, question
        answer = next(iter(question.answers))
        if question.family == "attribute":  # the one object asked about, whose attribute is the answer
            (box,) = boxes
            obj = next(o for o in scene.objects if o.box == box)
            assert answer in (obj.colour, obj.shape, obj.size)
        elif question.family == "exist":  # the matching objects: some exactly when the answer is yes
            assert bool(boxes) == (answer == "yes")
        elif question.family == "count" or (question.family == "relation" and question.question.startswith("how many")):
            assert len(boxes) == int(answer), question  # the objects counted
        elif question.question.startswith("what ") and question.family == "relation":
            assert len(boxes) == 1  # the related object whose attribute is asked
        elif question.family == "compare" and " same " in question.question:
            assert len(boxes) == 2
        seen.add(question.family)
    assert seen == {"exist", "count", "attribute", "compare", "relation"}
    without = [q for part in splits.values() for q in part.vqa if not q.referent_boxes]
    assert without and all(next(iter(q.answers)) in ("no", "0") for q in without)  # nothing there to point at
    assert {q.family for q in without} == {"exist", "count", "relation"}


def test_referent_targets_are_the_real_proposals_that_cover_a_referent():
    regions = torch.tensor([[[0, 0, 9, 9], [0, 0, 19, 19], [50, 50, 59, 59], [0, 0, 9, 9]]], dtype=torch.float32)
    region_mask = torch.tensor([[False, False, False, True]])  # the last proposal is padding
    referents = torch.tensor([[[0, 0, 9, 9], [0, 0, 0, 0]]], dtype=torch.float32)
    referent_mask = torch.tensor([[False, True]])
    targets = referent_targets(regions, region_mask, referents, referent_mask, iou=0.5)
    assert targets.positive.tolist() == [[True, False, False, False]]  # [0,0,19,19] has IoU 0.25
    assert targets.distribution.tolist() == [[1.0, 0.0, 0.0, 0.0]] and targets.has_positive.tolist() == [True]
    loose = referent_targets(regions, region_mask, referents, referent_mask, iou=0.2)
    assert loose.positive.tolist() == [[True, True, False, False]]
    assert torch.allclose(loose.distribution, torch.tensor([[0.8, 0.2, 0.0, 0.0]]))  # IoU-weighted
    none = referent_targets(regions, region_mask, referents[:, :0], referent_mask[:, :0])
    assert not none.has_positive.any() and float(grounding_loss(torch.zeros(1, 4), none)) == 0.0
    attention = torch.tensor([[0.0, 5.0, 0.0, 9.0]])  # the padded slot never counts as the top region
    assert pointing_hits(attention.masked_fill(region_mask, -1e9), loose).tolist() == [True]
    assert pointing_hits(attention.masked_fill(region_mask, -1e9), targets).tolist() == [False]


def test_without_the_weight_the_loss_is_the_answer_loss_and_the_head_answers_as_before():
    head = build_head("vqa", HIDDEN, **task_overrides("vqa"))
    torch.manual_seed(0)
    net = TinyNet(head).eval()
    batch = make_batch("vqa")
    outputs = net(batch)
    assert outputs["region_attention"].shape == batch.region_mask.shape
    cfg = head_config(0.0)
    loss, logs = VQAObjective(cfg).loss_from_outputs(outputs, batch)
    assert float(loss.detach()) == float(vqa_loss(outputs["logits"], batch.targets["answer_scores"]).detach())
    assert set(logs) == {"loss", "vqa_acc"}  # no referents in the batch: nothing else
    with pytest.raises(KeyError, match="grounding_weight is 0.5 .*no targets\\['referent_boxes'\\]"):
        VQAObjective(head_config(0.5)).loss_from_outputs(outputs, batch)


def head_config(weight: float) -> VQAHeadConfig:
    return replace(VQAHeadConfig(**task_overrides("vqa")), grounding_weight=weight)


def pointing_batch(seed: int):
    """make_batch's VQA data, whose answer is read from region 0: that region is the referent."""
    batch = make_batch("vqa", size=16, seed=seed)
    batch.targets["referent_boxes"] = batch.region_boxes[:, :1].clone()
    batch.targets["referent_mask"] = torch.zeros(16, 1, dtype=torch.bool)
    return batch


def train_pointing(weight: float, steps: int = 80) -> tuple[float, float, float]:
    """(grounding KL before, after, pointing % on held-out batches) of TinyNet trained with ``weight``."""
    torch.manual_seed(0)
    net = TinyNet(build_head("vqa", HIDDEN, **task_overrides("vqa")))
    objective = VQAObjective(head_config(weight))
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    probe = VQAObjective(head_config(1.0))
    before = probe.loss_from_outputs(net(pointing_batch(100)), pointing_batch(100))[1]["vqa_grounding"]
    for step in range(steps):
        batch = pointing_batch(step)
        loss, _ = objective.loss_from_outputs(net(batch), batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    after = probe.loss_from_outputs(net(pointing_batch(100)), pointing_batch(100))[1]["vqa_grounding"]
    held_out = evaluate_vqa(objective.cfg, net, [pointing_batch(200 + k) for k in range(4)])
    return before, after, held_out["vqa_pointing"]


def test_grounding_supervision_teaches_the_region_attention_to_point_at_the_referent():
    before, after, pointing = train_pointing(1.0)
    assert after < 0.4 * before and pointing >= 95.0
    _, unsupervised_after, unsupervised = train_pointing(0.0)
    assert unsupervised_after > 2 * after and pointing > unsupervised


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return shared_scenes(tmp_path_factory)


def test_the_store_and_the_generated_scenes_carry_referent_boxes(built):
    records = {q.question_id: q for q in scene_records()["train"].vqa}
    data = open_task_data(TaskDataConfig(root=built.root, task="vqa"))
    batch = next(data.batches("train", batch_size=8, seed=1))
    boxes, padding = batch.targets["referent_boxes"], batch.targets["referent_mask"]
    assert boxes.shape[:2] == padding.shape and boxes.shape[0] == 8 and boxes.dtype == torch.float32
    for row, qid in enumerate(batch.meta["question_id"]):
        expected = torch.tensor(records[qid].referent_boxes, dtype=torch.float32).reshape(-1, 4)
        assert torch.equal(boxes[row][~padding[row]], expected)
    generated = generated_scenes(TaskDataConfig(task="vqa"), train_images=30)
    batch = next(generated.batches("train", batch_size=8, seed=1))
    boxes, padding = batch.targets["referent_boxes"], batch.targets["referent_mask"]
    real = ~padding
    assert real.any() and bool((boxes[real][:, 2:] > boxes[real][:, :2]).all())
    # every referent box is one of the image's proposals (generated scenes propose the object boxes)
    for row in range(8):
        proposals = {tuple(b) for b in batch.region_boxes[row].tolist()}
        assert {tuple(b) for b in boxes[row][real[row]].tolist()} <= proposals


def test_a_data_set_without_referents_is_named_when_grounding_is_asked_for(built):
    data = open_task_data(TaskDataConfig(root=built.root, task="vqa"))
    batch = next(data.batches("val", batch_size=4, seed=0))
    answers = data.info.num_answers
    batch.targets = {"answer_scores": batch.targets["answer_scores"]}  # as a data set written before them
    outputs = {"logits": torch.zeros(4, answers), "region_attention": torch.zeros(batch.region_mask.shape)}
    with pytest.raises(KeyError, match="the data set has no referent boxes"):
        VQAObjective(replace(head_config(1.0), num_answers=answers)).loss_from_outputs(outputs, batch)
    loss, logs = VQAObjective(replace(head_config(0.0), num_answers=answers)).loss_from_outputs(outputs, batch)
    assert set(logs) == {"loss", "vqa_acc"}


def test_grounding_is_refused_before_training_on_data_without_referents(built):
    from mmsearch.data.task_data import TaskInfo
    from mmsearch.tasks.vqa import fit_head

    info = open_task_data(TaskDataConfig(root=built.root, task="vqa")).info
    assert info.optional_targets == ("referent_boxes",)
    assert generated_scenes(TaskDataConfig(task="vqa"), train_images=10).info.optional_targets == ("referent_boxes",)
    assert fit_head(head_config(1.0), replace_info(info)).grounding_weight == 1.0
    without = TaskInfo(task="vqa", region_dim=8, num_answers=5)  # e.g. VQA-v2: no referents
    assert fit_head(VQAHeadConfig(), without).num_answers == 5
    with pytest.raises(ValueError, match="head.grounding_weight is 1.0 but the data has no referent boxes"):
        fit_head(VQAHeadConfig(grounding_weight=1.0), without)


def replace_info(info):
    """``info`` with the test head's answer count (the head config states 5 answers)."""
    import dataclasses

    return dataclasses.replace(info, num_answers=5)
