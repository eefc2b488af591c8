"""The real-format path: tiny VQA-v2 JSON files and bottom-up-attention .npz files written here,
precomputed (features copied, no image encoder) and opened as VQA task data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmsearch.config import load_config
from mmsearch.data.dataset_root import DatasetRoot
from mmsearch.data.loaders import soft_scores
from mmsearch.data.precompute import BUA_ENCODER, precompute
from mmsearch.data.precompute.config import PrecomputeConfig
from mmsearch.data.store import open_store
from mmsearch.data.tasks import open_task_data
from mmsearch.data.task_data import TaskDataConfig

DIM = 32  # bottom-up-attention files hold 2048-d features; small here
IMAGES = {"train2014": [11, 12, 13, 14], "val2014": [21, 22]}
QUESTIONS = ["Is there a dog?", "What color is the bus?", "How many cats are there?"]
ANSWER_SETS = [
    ("yes/no", [("yes", 9), ("no", 1)]),
    ("other", [("red", 6), ("blue", 3), ("dark red", 1)]),
    ("number", [("2", 4), ("two", 2), ("3", 4)]),
]


def write_npz(folder, subset, image_id, regions):
    rng = np.random.default_rng(image_id)
    xy = rng.uniform(0, 300, size=(regions, 2))
    path = folder / subset / f"COCO_{subset}_{image_id:012d}.jpg.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=rng.standard_normal((DIM, regions)).astype(np.float32),  # [D, N] as released
             bbox=np.concatenate([xy, xy + 40], 1).astype(np.float32), image_h=480, image_w=640)
    return path


@pytest.fixture(scope="module")
def vqa_files(tmp_path_factory):
    base = tmp_path_factory.mktemp("vqa_v2")
    annotations, features = base / "annotations", base / "bua"
    annotations.mkdir()
    expected = {}
    for subset, image_ids in IMAGES.items():
        questions, answers = [], []
        for k, image_id in enumerate(image_ids):
            write_npz(features, subset, image_id, regions=3 + k)
            for j, (text, (answer_type, given)) in enumerate(zip(QUESTIONS, ANSWER_SETS)):
                qid = image_id * 10 + j
                humans = [a for a, n in given for _ in range(n)]
                questions.append({"question_id": qid, "image_id": image_id, "question": text})
                answers.append({
                    "question_id": qid, "image_id": image_id, "question_type": "what", "answer_type": answer_type,
                    "multiple_choice_answer": given[0][0],
                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(humans)],
                })
                expected[str(qid)] = soft_scores(humans)
        (annotations / f"v2_OpenEnded_mscoco_{subset}_questions.json").write_text(json.dumps({"questions": questions}))
        (annotations / f"v2_mscoco_{subset}_annotations.json").write_text(json.dumps({"annotations": answers}))
    return {"annotations": str(annotations), "features": features, "scores": expected}


@pytest.fixture(scope="module")
def built(vqa_files, tmp_path_factory):
    cfg = load_config(PrecomputeConfig, {
        "source": {"real": {"dataset": "vqa_v2", "annotations": vqa_files["annotations"], "feature_root": str(vqa_files["features"])},
                   "splits": ["train", "val"]},
        "output": str(tmp_path_factory.mktemp("out") / "vqa"),
        "backend": "local",
        "text": {"max_tokens": 14},
    })
    return precompute(cfg)


def test_region_features_are_copied_from_the_npz_files(built, vqa_files):
    card = built.card
    assert card.tables == ("regions", "images", "vqa") and card.splits["train"]["regions"] == 4
    assert card.encoders["image"] == {"name": BUA_ENCODER, "dim": DIM, "image_latent": "mean of the region features"}
    regions = open_store(DatasetRoot(built.root).split_uri("val"), expect={"regions": {"features": DIM}}).table("regions").read_all(float_dtype=None)
    for row, image_id in enumerate(regions["image_id"]):
        with np.load(vqa_files["features"] / "val2014" / f"COCO_val2014_{int(image_id):012d}.jpg.npz") as raw:
            n = raw["bbox"].shape[0]
            assert regions["features_lengths"][row] == n
            assert np.array_equal(regions["features"][row][:n], raw["x"].T.astype(np.float16))
            assert np.allclose(regions["boxes"][row][:n], raw["bbox"])
        assert (regions["image_h"][row], regions["image_w"][row]) == (480, 640)
    images = open_store(DatasetRoot(built.root).split_uri("val")).table("images").read_all()
    assert np.allclose(images["image"][0], regions["features"][0][: regions["features_lengths"][0]].astype(np.float32).mean(0), atol=1e-2)


def test_vqa_targets_from_the_human_answers(built, vqa_files):
    answers = DatasetRoot(built.root).read_answers()
    # The top answer of each train question ("two" normalises to "2"), 4 times each, ties alphabetical.
    assert answers == ["2", "red", "yes"]
    data = open_task_data(TaskDataConfig(root=built.root, task="vqa"))
    assert data.info.region_dim == DIM and data.info.num_answers == len(answers)
    batch = next(data.batches("val", batch_size=10, shuffle=False))
    assert batch.region_feats.shape[2] == DIM and batch.image_size[0].tolist() == [480.0, 640.0]
    for row, qid in enumerate(batch.meta["question_id"]):
        expected = torch.zeros(len(answers))
        for answer, score in vqa_files["scores"][qid].items():
            if answer in answers:
                expected[answers.index(answer)] = score
        assert torch.equal(batch.targets["answer_scores"][row], expected)
    counts = (~batch.region_mask).sum(1).tolist()
    assert sorted(set(counts)) == [3, 4] and batch.region_feats.shape[1] == max(counts)
    assert set(batch.meta["answer_type"]) == {"yes/no", "other", "number"}
