"""``open_task_data`` over a precomputed data set: batches, parts, shuffling, targets, errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mmsearch.data.dataset_root import DatasetError, DatasetRoot
from mmsearch.data.store import StoreWriter, open_store
from mmsearch.data.tasks import open_task_data
from mmsearch.data.text import encode_ids
from mmsearch.data.task_data import TaskData, TaskDataConfig
from test_precompute_common import scene_records, shared_scenes


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return shared_scenes(tmp_path_factory)


@pytest.fixture(scope="module")
def records():
    return scene_records()


def task_data(built, task="vqa", **changes):
    return open_task_data(TaskDataConfig(root=built.root, task=task, **changes))


def ids_of(batches, key):
    return [i for b in batches for i in b.meta[key]]


@pytest.mark.parametrize("task", ["vqa", "itm", "vg"])
@pytest.mark.parametrize("text_input", ["tokens", "states"])
def test_batches_have_the_contract_shapes(built, records, task, text_input):
    data = task_data(built, task, text_input=text_input)
    assert isinstance(data, TaskData)
    info = data.info
    assert info.task == task and info.region_dim == 1280 and info.text_state_dim == 384
    assert info.vocab_size == len(DatasetRoot(built.root).read_vocab()) and info.max_regions == built.card.max_regions
    assert (info.embedding_init is not None) == (text_input == "tokens")
    if info.embedding_init is not None:
        assert info.embedding_init.shape == (info.vocab_size, 384) and not info.embedding_init[0].any()
    batch = next(data.batches("train", batch_size=5, seed=3))
    b, t = batch.text_mask.shape
    lengths = (~batch.text_mask).sum(1)
    assert b == 5 and batch.text_mask.dtype == torch.bool and int(lengths.max()) == t  # padded to the batch's longest
    if text_input == "tokens":
        assert batch.text_ids.dtype == torch.int64 and batch.text_states is None
        assert bool((batch.text_ids[batch.text_mask] == 0).all()) and bool((batch.text_ids[~batch.text_mask] > 0).all())
    else:
        assert batch.text_ids is None and batch.text_states.shape == (5, t, 384) and batch.text_states.dtype == torch.float32
        assert float(batch.text_states[batch.text_mask].abs().sum()) == 0.0
    n = batch.region_feats.shape[1]
    counts = [len(records["train"].images[i].proposals) for i in batch.meta["image_id"]]
    assert batch.region_feats.shape == (5, n, 1280) and batch.region_feats.dtype == torch.float32 and n == max(counts)
    assert (~batch.region_mask).sum(1).tolist() == counts and batch.region_boxes.shape == (5, n, 4)
    assert batch.image_size.tolist() == [[128.0, 128.0]] * 5
    assert float(batch.region_feats[batch.region_mask].abs().sum()) == 0.0
    if task == "vqa":
        assert batch.targets["answer_scores"].shape == (5, info.num_answers) and set(batch.meta) == {"question_id", "image_id", "answer_type", "family"}
    elif task == "itm":
        key = "neg_text_ids" if text_input == "tokens" else "neg_text_states"
        mask = batch.targets["neg_text_mask"]
        assert mask.shape[:2] == (5, 3) and batch.targets[key].shape[:3] == mask.shape and set(batch.meta) == {"caption_id", "image_id"}
    else:
        assert batch.targets["gt_box"].shape == (5, 4) and set(batch.meta) == {"ref_id", "image_id", "family"}


def test_weights_and_arch_divide_train_by_image(built):
    data = task_data(built, "vqa", arch_fraction=0.3, split_seed=5)
    weights = ids_of(data.batches("weights", batch_size=16, shuffle=False), "question_id")
    arch = ids_of(data.batches("arch", batch_size=16, shuffle=False), "question_id")
    train = ids_of(data.batches("train", batch_size=16, shuffle=False), "question_id")
    assert not set(weights) & set(arch) and sorted(weights + arch) == sorted(train)
    images = {p: set(ids_of(data.batches(p, batch_size=16, shuffle=False), "image_id")) for p in ("weights", "arch")}
    assert not images["weights"] & images["arch"]
    assert len(images["arch"]) == round(0.3 * 17) and set(images["arch"]) == set(data.arch_images())
    assert data.num_samples("weights") == len(weights) and data.num_samples("arch") == len(arch)
    other = task_data(built, "vqa", arch_fraction=0.3, split_seed=6)
    assert set(other.arch_images()) != set(data.arch_images())  # the division is a function of split_seed


def test_limit_caps_a_part(built):
    data = task_data(built, "itm", limit={"weights": 7, "val": 4})
    assert data.num_samples("weights") == 7 and data.num_samples("val") == 4
    assert len(ids_of(data.batches("weights", batch_size=3), "caption_id")) == 7
    full = task_data(built, "itm")
    assert set(ids_of(data.batches("weights", batch_size=50), "caption_id")) < set(ids_of(full.batches("weights", batch_size=50), "caption_id"))


def test_shuffle_is_a_pure_function_of_seed_and_epoch(built):
    data = task_data(built, "vg")
    order = lambda **kw: ids_of(data.batches("train", batch_size=4, **kw), "ref_id")  # noqa: E731
    assert order(seed=1, epoch=2) == order(seed=1, epoch=2) == ids_of(task_data(built, "vg").batches("train", batch_size=4, seed=1, epoch=2), "ref_id")
    assert order(seed=1, epoch=2) != order(seed=1, epoch=3) and order(seed=1, epoch=2) != order(seed=2, epoch=2)
    assert sorted(order(seed=1, epoch=2)) == sorted(order(shuffle=False))
    unshuffled = order(shuffle=False)
    assert unshuffled == order(shuffle=False, epoch=9)
    assert [len(b.meta["ref_id"]) for b in data.batches("train", batch_size=10, drop_last=True)] == [10] * (len(unshuffled) // 10)


def test_targets_match_the_records(built, records):
    vocab = DatasetRoot(built.root).read_vocab()
    vqa = task_data(built, "vqa")
    batch = next(vqa.batches("test", batch_size=100, shuffle=False))
    answers = list(vqa.info.answers)
    for row, qid in enumerate(batch.meta["question_id"]):
        question = next(q for q in records["test"].vqa if q.question_id == qid)
        expected = torch.zeros(len(answers))
        for answer, score in question.answers.items():
            if answer in answers:
                expected[answers.index(answer)] = score
        assert torch.equal(batch.targets["answer_scores"][row], expected)
        ids, _ = encode_ids([question.question], vocab)
        assert batch.text_ids[row][~batch.text_mask[row]].tolist() == ids[0][ids[0] > 0].tolist()
    train_question = records["train"].vqa[0]
    row = next(b for b in vqa.batches("train", batch_size=200, shuffle=False))
    at = row.meta["question_id"].index(train_question.question_id)
    top = max(train_question.answers, key=train_question.answers.get)
    assert int(row.targets["answer_scores"][at].argmax()) == answers.index(top)

    vg = next(task_data(built, "vg").batches("val", batch_size=100, shuffle=False))
    for row, ref_id in enumerate(vg.meta["ref_id"]):
        ref = next(r for r in records["val"].refs if r.ref_id == ref_id)
        assert vg.targets["gt_box"][row].tolist() == pytest.approx(list(ref.target_box))

    itm = next(task_data(built, "itm").batches("val", batch_size=100, shuffle=False))
    for row, caption_id in enumerate(itm.meta["caption_id"]):
        caption = next(c for c in records["val"].captions if c.caption_id == caption_id)
        mask, ids = itm.targets["neg_text_mask"][row], itm.targets["neg_text_ids"][row]
        present = ~mask.all(dim=1)
        assert int(present.sum()) == len(caption.hard_negatives)
        for k, text in enumerate(caption.hard_negatives):
            expected, _ = encode_ids([text], vocab)
            assert ids[k][~mask[k]].tolist() == expected[0][expected[0] > 0].tolist()
            assert ids[k][~mask[k]].tolist() != itm.text_ids[row][~itm.text_mask[row]].tolist()  # negatives differ


def test_batches_feed_the_task_objectives(built):
    """The heads' own contract checks accept the batches (stub network outputs)."""
    from mmsearch.heads.config import ITMHeadConfig, VQAHeadConfig
    from mmsearch.heads.itm import ITMObjective
    from mmsearch.heads.vqa import VQAObjective

    vqa = task_data(built, "vqa")
    batch = next(vqa.batches("train", batch_size=6))
    loss, logs = VQAObjective(VQAHeadConfig(num_answers=vqa.info.num_answers)).loss_from_outputs(
        {"logits": torch.zeros(6, vqa.info.num_answers, requires_grad=True)}, batch)
    assert torch.isfinite(loss) and "vqa_acc" in logs

    def run(pairs):
        return {"logits": pairs.text_mask.float().sum(1) * 0.01 + pairs.region_feats[:, 0, 0]}

    itm_batch = next(task_data(built, "itm").batches("train", batch_size=6))
    pairs = ITMObjective(ITMHeadConfig()).prepare(run, itm_batch)
    assert int((pairs.targets["itm_term"] == 4).sum()) > 0  # the data set's hard negatives were used


def test_collation_is_cheap(built):
    import time

    data = task_data(built, "itm", text_input="states")
    split = data._split("train")
    rows = np.arange(min(64, split.num_samples))
    data.collate(split, rows)
    start = time.perf_counter()
    for _ in range(5):
        data.collate(split, rows)
    per_batch = (time.perf_counter() - start) / 5
    assert per_batch < 0.25, f"{per_batch * 1e3:.0f} ms to collate a batch"  # generous: a shared, loaded 2-core machine


def test_fusemix_reads_the_pairs_table(built):
    from mmsearch.recipes.fusemix.config import FuseMixDataConfig
    from mmsearch.recipes.fusemix.data import default_stream_factory, load_eval_set

    root = DatasetRoot(built.root)
    cfg = FuseMixDataConfig(store=root.split_uri("train"), val_store=root.split_uri("val"), test_store=root.split_uri("test"))
    train = default_stream_factory(cfg, "train", 0, 1)
    batch = next(iter(train.epoch(0, 16, 0)))
    assert batch["image"].shape == (16, 1280) and batch["text"].shape == (16, 384) and len(batch["image_id"]) == 16
    assert batch["image"].dtype == torch.float32
    val = load_eval_set(default_stream_factory(cfg, "val", 0, 1), cfg)
    images = open_store(root.split_uri("val")).table("images").read_all()
    assert val.x.shape == (built.card.splits["val"]["images"], 1280) and val.y.shape == (built.card.splits["val"]["pairs"], 384)
    order = sorted(range(len(images["image_id"])), key=lambda i: images["image_id"][i])
    assert {tuple(r) for r in val.x.numpy()} == {tuple(images["image"][i]) for i in order}
    assert len(set(val.y_to_x.tolist())) == len(val.x)


# -- errors ------------------------------------------------------------------------------------


def test_missing_root_and_card(built, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_task_data(TaskDataConfig(root=str(tmp_path / "nothing")))
    with pytest.raises(DatasetError, match="data.root is empty"):
        open_task_data(TaskDataConfig(root=""))
    copy = tmp_path / "copy"
    shutil.copytree(built.root, copy)
    (copy / "dataset.json").unlink()
    with pytest.raises(DatasetError, match="incomplete"):
        open_task_data(TaskDataConfig(root=str(copy)))


def _copy_with_card(built, tmp_path, **card_changes):
    copy = tmp_path / "copy"
    shutil.copytree(built.root, copy)
    card = json.loads((copy / "dataset.json").read_text())
    for key, value in card_changes.items():
        card[key] = value
    (copy / "dataset.json").write_text(json.dumps(card))
    return str(copy)


def test_dimensions_must_match_the_card(built, tmp_path):
    encoders = json.loads(json.dumps(built.card.encoders))
    encoders["image"]["dim"] = 2048
    root = _copy_with_card(built, tmp_path, encoders=encoders)
    with pytest.raises(DatasetError, match="dimension is 1280, expected 2048"):
        open_task_data(TaskDataConfig(root=root))


def test_unknown_task_table_and_missing_states(built, tmp_path):
    root = _copy_with_card(built, tmp_path, tables=["regions", "images", "vqa"])
    with pytest.raises(DatasetError, match="needs table 'refs'"):
        open_task_data(TaskDataConfig(root=root, task="vg"))
    encoders = json.loads(json.dumps(built.card.encoders))
    encoders["text"]["states"] = False
    other = tmp_path / "other"
    shutil.copytree(root, other)
    card = json.loads((other / "dataset.json").read_text())
    card["encoders"] = encoders
    (other / "dataset.json").write_text(json.dumps(card))
    with pytest.raises(DatasetError, match="no per-token states"):
        open_task_data(TaskDataConfig(root=str(other), text_input="states"))


def test_empty_split_is_named(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built.root, copy)
    val = open_store(str(copy / "val"))
    regions = val.table("regions").read_all(float_dtype=None)
    shutil.rmtree(copy / "val")
    with StoreWriter(str(copy / "val"), dataset="scenes", split="val") as writer:
        for name, table in val.meta.tables.items():
            writer.add_table(name, table.columns)
        lengths = regions["features_lengths"]
        writer.write_batch("regions", {
            "image_id": regions["image_id"], "image_h": regions["image_h"], "image_w": regions["image_w"],
            "features": [f[:n] for f, n in zip(regions["features"], lengths)],
            "boxes": [b[:n] for b, n in zip(regions["boxes"], lengths)],
        })
    with pytest.raises(DatasetError, match="split 'val': no vqa rows"):
        open_task_data(TaskDataConfig(root=str(copy)))
    with pytest.raises(ValueError, match="unknown part"):
        task_data(built).num_samples("nope")


def test_collate_rows_equals_the_batches_collation(tmp_path_factory):
    """Data-parallel workers receive positions; collate_rows must give what batches() gives."""
    import numpy as np
    import torch

    from mmsearch.data.synthetic import SyntheticTaskData

    data = SyntheticTaskData("vqa", train_images=20, val_images=4, test_images=4)
    first = next(data.batches("weights", batch_size=8, epoch=3, seed=1, shuffle=False))
    same = data.collate_rows("weights", np.arange(8))
    assert torch.equal(first.text_ids, same.text_ids) and torch.equal(first.region_feats, same.region_feats)
    assert torch.equal(first.targets["answer_scores"], same.targets["answer_scores"])
