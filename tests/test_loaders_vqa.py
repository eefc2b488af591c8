"""VQA-v2 in its released JSON format, with bottom-up-attention region files written by the test."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from mmsearch.data.loaders import (
    RecordError,
    build_answer_vocab,
    load_answer_vocab,
    load_vqa_v2,
    normalize_answer,
    read_bua_npz,
    save_answer_vocab,
    soft_scores,
)


def human_answers(*pairs: tuple[str, int]) -> list[dict]:
    answers = [a for a, n in pairs for _ in range(n)]
    assert len(answers) == 10
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]


def annotation(qid, image_id, mc, answers, answer_type, question_type):
    return {
        "question_id": qid,
        "image_id": image_id,
        "multiple_choice_answer": mc,
        "answers": answers,
        "answer_type": answer_type,
        "question_type": question_type,
    }


def write_region_file(root, image_dir, image_id, n=3, dim=16, h=480, w=640):
    folder = root / image_dir
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(image_id)
    xy = rng.uniform(0, 200, size=(n, 2))
    np.savez(
        folder / f"COCO_{image_dir}_{image_id:012d}.jpg.npz",
        x=rng.standard_normal((dim, n)).astype(np.float32),
        bbox=np.concatenate([xy, xy + 50], 1),
        image_h=h,
        image_w=w,
    )


@pytest.fixture
def vqa_root(tmp_path):
    root, features = tmp_path / "vqa", tmp_path / "bua"
    root.mkdir()
    questions = [
        {"question_id": 9001, "image_id": 9, "question": "Is there a dog?"},
        {"question_id": 9002, "image_id": 9, "question": "How many cats are there?"},
        {"question_id": 4201, "image_id": 42, "question": "What color is the bus?"},
    ]
    annotations = [
        annotation(9001, 9, "yes", human_answers(("yes", 4), ("Yes.", 3), ("no", 3)), "yes/no", "is there a"),
        annotation(9002, 9, "2", human_answers(("two", 2), ("2", 1), ("3", 3), ("three", 1), ("a few", 3)), "number", "how many"),
        annotation(4201, 42, "red", human_answers(("red", 9), ("the red bus", 1)), "other", "what color is the"),
    ]
    (root / "v2_OpenEnded_mscoco_train2014_questions.json").write_text(json.dumps({"info": {}, "questions": questions}))
    (root / "v2_mscoco_train2014_annotations.json").write_text(json.dumps({"info": {}, "annotations": annotations}))
    test_questions = [{"question_id": 7001, "image_id": 7, "question": "What is this?"}]
    (root / "v2_OpenEnded_mscoco_test-dev2015_questions.json").write_text(json.dumps({"questions": test_questions}))
    write_region_file(features, "train2014", 9, h=480, w=640)
    write_region_file(features, "train2014", 42, h=375, w=500)
    write_region_file(features, "test2015", 7)
    return root, features


@pytest.mark.parametrize(
    "raw, normalised",
    [
        ("two", "2"),
        ("Yes.", "yes"),
        ("a dog", "dog"),
        ("The Red Bus!", "red bus"),
        ("one", "1"),
        ("none", "0"),
        ("2.5", "2.5"),
        ("1,000", "1000"),
        ("dog/cat", "dog cat"),
        ("dont", "don't"),
        ("couldnt've", "couldn't've"),
        ("  Ten\n", "10"),
        ("well", "well"),
    ],
)
def test_official_answer_normalisation(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_soft_scores_follow_mmnas():
    scores = soft_scores(["yes"] * 4 + ["Yes."] * 3 + ["no"] * 2 + ["maybe"])
    assert scores == {"yes": 1.0, "no": 0.6, "maybe": 0.3}
    assert soft_scores(["two", "2", "Two"]) == {"2": 0.9}


def test_load_train_split(vqa_root):
    root, features = vqa_root
    counts = Counter()
    split = load_vqa_v2(root, "train", feature_root=features, answer_counts=counts)
    assert split.name == "vqa_v2" and split.split == "train"
    assert [r.question_id for r in split.vqa] == ["9001", "9002", "4201"]
    yes_no, count, colour = split.vqa
    assert yes_no.answers == {"yes": 1.0, "no": 0.9} and yes_no.answer_type == "yes/no"
    assert count.answers == {"2": 0.9, "3": 1.0, "few": 0.9} and count.family == "how many"
    assert colour.answers == {"red": 1.0, "red bus": 0.3} and colour.question == "What color is the bus?"
    assert counts == Counter({"yes": 1, "2": 1, "red": 1})
    assert sorted(split.images) == ["42", "9"]
    image = split.images["42"]
    assert (image.height, image.width) == (375, 500)
    assert image.region_file.endswith("bua/train2014/COCO_train2014_000000000042.jpg.npz")
    assert read_bua_npz(image.region_file).features.shape == (3, 16)


def test_test_dev_has_questions_but_no_answers(vqa_root):
    root, features = vqa_root
    split = load_vqa_v2(root, "test", subset="test-dev2015", feature_root=features)
    (record,) = split.vqa
    assert record.answers == {} and record.image_id == "7"
    assert "test2015/COCO_test2015_000000000007.jpg.npz" in split.images["7"].region_file


def test_answer_vocabulary_by_frequency(tmp_path):
    mc = ["yes", "Yes", "no", "2", "two", "yes", "red", "no"]
    assert build_answer_vocab(mc) == ["yes", "2", "no", "red"]
    assert build_answer_vocab(mc, min_count=2) == ["yes", "2", "no"]
    assert build_answer_vocab(Counter({"a": 5, "b": 5, "c": 1}), max_size=2) == ["a", "b"]
    path = save_answer_vocab(tmp_path / "answers.json", ["yes", "no", "2"])
    assert load_answer_vocab(path) == ["yes", "no", "2"]


def test_raw_images_and_unresolved_sizes(vqa_root, tmp_path):
    root, _ = vqa_root
    split = load_vqa_v2(root, "train", image_root=tmp_path / "coco", resolve_sizes=False)
    image = split.images["9"]
    assert image.region_file is None and image.path.endswith("coco/train2014/COCO_train2014_000000000009.jpg")
    assert (image.height, image.width) == (0, 0)


def test_errors_name_the_file_and_field(vqa_root, tmp_path):
    root, features = vqa_root
    with pytest.raises(FileNotFoundError, match="v2_mscoco_val2014_annotations.json|v2_OpenEnded_mscoco_val2014"):
        load_vqa_v2(root, "val", feature_root=features)
    with pytest.raises(FileNotFoundError, match="COCO_train2014_000000000009.jpg.npz"):
        load_vqa_v2(root, "train", feature_root=tmp_path / "no_features")
    with pytest.raises(ValueError, match="feature_root"):
        load_vqa_v2(root, "train")
    questions = root / "v2_OpenEnded_mscoco_train2014_questions.json"
    data = json.loads(questions.read_text())
    del data["questions"][1]["question"]
    questions.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"questions\[1\]: missing field 'question'"):
        load_vqa_v2(root, "train", feature_root=features)
    data["questions"] = data["questions"][:1]
    questions.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="annotations have no question"):
        load_vqa_v2(root, "train", feature_root=features)
