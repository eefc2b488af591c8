"""The derived-training recipe run directly (one process, LocalContext) on synthetic task data:
learning, per-epoch reports, self-describing checkpoints, exact resume, prediction files, shards."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from mmsearch.config import load_config
from mmsearch.data.synthetic import SyntheticTaskData
from mmsearch.tasks import make_objective
from mmsearch.nas import ArchSpec, load_arch_spec
from mmsearch.recipes.context import LocalContext
from mmsearch.recipes.train_derived.recipe import train_derived
from mmsearch.recipes.train_derived.outputs import evaluate_checkpoint
from mmsearch.recipes.train_derived.config import TrainDerivedConfig, resolve_config
from mmsearch.recipes.train_derived.data import StridedShard, part_collator
from mmsearch.recipes.train_derived.engine import build_model, parameters_without_grad
from mmsearch.recipes.train_derived.state import read_state

ALL_OPS_ARCH = {"enc": [["self_att"], ["feed_forward"]], "dec": [["rel_self_att"], ["guided_att"], ["self_att"], ["feed_forward"]]}
SIZES = {"train_images": 40, "val_images": 10, "test_images": 10}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls: one thread is several times faster on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> dict[str, SyntheticTaskData]:
    return {task: SyntheticTaskData(task, **SIZES) for task in ("vqa", "itm", "vg")}


def config(task: str, out, **sections) -> TrainDerivedConfig:
    base = {
        "arch": ALL_OPS_ARCH,
        "data": {"root": "synthetic", "task": task},
        "model": {"hidden": 32, "head_dim": 16, "word_dim": 16},
        "head": {"task": task, "flat_mlp_size": 32},
        "optim": {"lr": 3e-3, "lr_decay_epochs": []},
        "train": {"epochs": 3, "batch_size": 16, "device": "cpu"},
        "eval": {"batch_size": 64},
        "output_dir": str(out),
    }
    for key, value in sections.items():
        base[key] = {**base[key], **value} if isinstance(base.get(key), dict) else value
    return load_config(TrainDerivedConfig, base)


def test_vqa_learns_and_reports_every_epoch(data, tmp_path):
    context = LocalContext(tmp_path / "run")
    torch.set_num_threads(2)  # the caller's count; the config's (1) is for the run only
    result = train_derived(config("vqa", tmp_path / "run", train={"epochs": 4, "num_threads": 1}), context, data["vqa"])
    assert torch.get_num_threads() == 2
    history = context.history
    assert [m["epoch"] for m in history] == [1, 2, 3, 4] and result.history == history
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    for metrics in history:
        assert metrics["samples_per_s"] > 0 and metrics["epoch_s"] > 0 and metrics["world_size"] == 1
        assert metrics["peak_rss_mib"] > 0
        assert metrics["val_metric"] == metrics["val_vqa_acc"]
        assert {"val_vqa_acc_yes_no", "val_vqa_acc_number", "val_vqa_acc_other"} <= set(metrics)  # by answer type
    assert history[0]["steps"] == data["vqa"].num_samples("train") // 16 and history[-1]["resumed_from_epoch"] == 0
    assert {"test_vqa_acc", "test_vqa_acc_number"} <= set(history[-1]) and "test_vqa_acc" not in history[0]
    answers = torch.cat([b.targets["answer_scores"].argmax(1) for b in data["vqa"].batches("val", batch_size=64, shuffle=False)])
    majority = 100.0 * torch.bincount(answers).max().item() / len(answers)
    assert history[-1]["val_metric"] > majority  # better than always giving the most frequent answer
    saved = json.loads((tmp_path / "run" / "train_result.json").read_text())
    assert saved["best_val_metric"] == max(m["val_metric"] for m in history) and len(saved["history"]) == 4


def test_checkpoint_carries_spec_config_and_weights(data, tmp_path):
    run = tmp_path / "run"
    result = train_derived(config("vqa", run, train={"epochs": 2}), LocalContext(run), data["vqa"])
    checkpoint = run / "checkpoints" / "epoch_000002"
    state = read_state(checkpoint)
    assert state["progress"]["epoch"] == 2 and len(state["progress"]["history"]) == 2
    assert load_arch_spec(checkpoint / "arch.json").same_architecture(ArchSpec.from_dict(ALL_OPS_ARCH))
    saved = load_config(TrainDerivedConfig, checkpoint / "config.yaml")
    assert saved == result.config and saved.model.region_dim == data["vqa"].info.region_dim
    # Evaluation needs nothing but the checkpoint (and the data): same test metrics, same files.
    evaluated = evaluate_checkpoint(checkpoint, splits=("test",), task_data=data["vqa"], output_dir=tmp_path / "eval", device="cpu")
    assert evaluated["test"]["vqa_acc"] == pytest.approx(result.metrics["test_vqa_acc"])
    assert json.loads((tmp_path / "eval" / "predictions" / "test_vqa_results.json").read_text()) == \
        json.loads((run / "predictions" / "test_vqa_results.json").read_text())


def test_resume_matches_an_uninterrupted_run(data, tmp_path):
    straight = train_derived(config("vqa", tmp_path / "a"), LocalContext(tmp_path / "a"), data["vqa"])
    train_derived(config("vqa", tmp_path / "b", train={"epochs": 1}), LocalContext(tmp_path / "b"), data["vqa"])
    context = LocalContext(tmp_path / "b")
    resumed = train_derived(config("vqa", tmp_path / "b"), context, data["vqa"])
    assert [m["epoch"] for m in context.history] == [2, 3] and context.history[0]["resumed_from_epoch"] == 1
    for key in ("train_loss", "val_metric", "test_vqa_acc", "steps", "samples"):
        assert resumed.metrics[key] == straight.metrics[key], key
    weights_a = torch.load(tmp_path / "a" / "checkpoints" / "epoch_000003" / "model.pt")
    weights_b = torch.load(tmp_path / "b" / "checkpoints" / "epoch_000003" / "model.pt")
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_resume_refuses_a_changed_config(data, tmp_path):
    train_derived(config("vqa", tmp_path, train={"epochs": 1}), LocalContext(tmp_path), data["vqa"])
    with pytest.raises(ValueError, match=r"optim.lr: 0.003 -> 0.001.*new run name / output_dir"):
        train_derived(config("vqa", tmp_path, optim={"lr": 1e-3}), LocalContext(tmp_path), data["vqa"])


def test_vqa_results_in_the_official_format(data, tmp_path):
    result = train_derived(config("vqa", tmp_path, train={"epochs": 1}), LocalContext(tmp_path), data["vqa"])
    rows = json.loads(open(result.files["test_results"]).read())
    assert len(rows) == data["vqa"].num_samples("test") and all(set(r) == {"question_id", "answer"} for r in rows)
    assert len({r["question_id"] for r in rows}) == len(rows)
    assert {r["answer"] for r in rows} <= set(data["vqa"].info.answers)
    val_rows = json.loads(open(result.files["val_results"]).read())
    assert len(val_rows) == data["vqa"].num_samples("val")


def test_vg_boxes_per_ref_id(data, tmp_path):
    result = train_derived(config("vg", tmp_path, train={"epochs": 1}), LocalContext(tmp_path), data["vg"])
    rows = json.loads(open(result.files["test_results"]).read())
    assert len(rows) == data["vg"].num_samples("test") and len({r["ref_id"] for r in rows}) == len(rows)
    boxes = np.array([r["box"] for r in rows])
    assert boxes.shape == (len(rows), 4) and (boxes[:, 2:] >= boxes[:, :2]).all()
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 128).all() and (boxes[:, [1, 3]] <= 96).all()  # clipped to the image
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    assert "test_vg_acc" in result.metrics and "test_vg_miou" in result.metrics


def test_itm_retrieval_metrics_file(data, tmp_path):
    result = train_derived(config("itm", tmp_path, train={"epochs": 1}), LocalContext(tmp_path), data["itm"])
    saved = json.loads(open(result.files["test_results"]).read())
    for key in ("itm_i2t_r1", "itm_i2t_r5", "itm_i2t_r10", "itm_t2i_r1", "itm_t2i_r5", "itm_t2i_r10"):
        assert 0.0 <= saved[key] <= 100.0
    assert saved["itm_rsum"] == pytest.approx(result.metrics["test_itm_rsum"])
    assert saved["itm_images"] == SIZES["test_images"]


@pytest.mark.parametrize("task", ["vqa", "itm", "vg"])
def test_every_parameter_gets_a_gradient(data, task):
    """DDP needs find_unused_parameters only when some parameter gets no gradient: with every op
    and head shipped, none does, so the probe keeps DDP on its fast path."""
    cfg = resolve_config(config(task, "unused"), data[task].info)
    model = build_model(cfg, data[task].info)
    batch = next(iter(data[task].batches("train", batch_size=8)))
    assert parameters_without_grad(model, make_objective(cfg.head), batch) == []
    model.head.spare = nn.Linear(2, 2)  # a module the forward never runs
    assert parameters_without_grad(model, make_objective(cfg.head), batch) == ["head.spare.weight", "head.spare.bias"]


def test_strided_shards_are_disjoint_equal_and_collate_like_batches(data):
    vqa = data["vqa"]
    shards = [StridedShard(vqa, rank=r, world_size=3, batch_size=8, seed=5, drop_last=False) for r in range(3)]
    positions = [s.positions(epoch=2) for s in shards]
    assert len({len(p) for p in positions}) == 1 and len(positions[0]) == vqa.num_samples("train") // 3
    assert len(set(np.concatenate(positions))) == 3 * len(positions[0])  # disjoint
    assert not np.array_equal(shards[0].positions(1), shards[0].positions(2))  # reshuffled per epoch
    first = next(iter(vqa.batches("train", batch_size=8, shuffle=False)))
    collated = part_collator(vqa, "train")(np.arange(8))
    assert torch.equal(collated.text_ids, first.text_ids) and torch.equal(collated.region_feats, first.region_feats)
    assert collated.meta["question_id"] == first.meta["question_id"]


# --- over a precomputed data set (the session's small scenes stores) ---------------------------
@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> str:
    from test_precompute_common import shared_scenes

    return str(shared_scenes(tmp_path_factory).root)


@pytest.mark.parametrize("task", ["vqa", "itm", "vg"])
def test_store_samples_collate_by_position_like_batches(store_root, task):
    from mmsearch.data.tasks import open_task_data
    from mmsearch.data.task_data import TaskDataConfig

    store = open_task_data(TaskDataConfig(root=store_root, task=task, limit={"train": 40}))
    first = next(iter(store.batches("train", batch_size=6, shuffle=False)))
    collated = part_collator(store, "train")(np.arange(6))
    assert torch.equal(collated.text_ids, first.text_ids) and torch.equal(collated.region_feats, first.region_feats)
    assert torch.equal(collated.text_mask, first.text_mask) and collated.meta == first.meta
    assert collated.targets.keys() == first.targets.keys()
    assert all(torch.equal(collated.targets[k], first.targets[k]) for k in first.targets)


def test_trains_on_a_precomputed_data_set(store_root, tmp_path):
    cfg = config("vqa", tmp_path, data={"root": store_root, "limit": {"train": 96, "val": 32, "test": 32}},
                 model={"word_dim": None}, train={"epochs": 1})  # word_dim: the width of the data's MiniLM rows
    result = train_derived(cfg, LocalContext(tmp_path))
    assert result.config.model.region_dim == 1280 and result.config.model.word_dim == 384
    rows = json.loads(open(result.files["test_results"]).read())
    from mmsearch.data.tasks import open_task_data

    expected = open_task_data(cfg.data).num_samples("test")
    assert len(rows) == expected == result.metrics["test_vqa_count"] and len({r["question_id"] for r in rows}) == expected
