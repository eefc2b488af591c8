"""``train_and_select``: one budget for every baseline, selection on val, the selected weights on test."""
from __future__ import annotations

import pytest
import torch

from mmsearch.baselines import DataSizes, Widths, build_baseline
from mmsearch.baselines.evaluation import chance_levels, evaluate_task
from mmsearch.baselines.training import TrainBudget, eval_batches, learning_rate, run_baseline, train_and_select
from mmsearch.data.synthetic import SyntheticTaskData
from mmsearch.tasks import primary_metric

WIDTHS = Widths(hidden=32, flat_mlp=32, head_dim=16, depth=1)
BUDGET = TrainBudget(epochs=3, batch_size=16, decay_epochs=1, eval_batch_size=32, itm_val_images=4, itm_test_images=6)


def synthetic(task: str) -> SyntheticTaskData:
    return SyntheticTaskData(task, train_images=24, val_images=6, test_images=8, samples_per_image=2)


def test_learning_rate_warms_up_over_the_first_epoch_then_decays_for_the_last():
    budget = TrainBudget(epochs=5, lr=1e-3, decay_epochs=2, decay_rate=0.2)
    warm = [learning_rate(budget, 0, step, 4) for step in range(4)]
    assert warm == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert [learning_rate(budget, e, 0, 4) for e in range(1, 5)] == pytest.approx([1e-3, 1e-3, 2e-4, 2e-4])


@pytest.mark.parametrize("task", ["vqa", "itm", "vg"])
def test_the_best_val_epoch_is_kept_and_evaluated_on_test(task):
    data = synthetic(task)
    torch.manual_seed(0)
    model = build_baseline("mcan", DataSizes.from_info(data.info), WIDTHS)
    result = train_and_select(model, data, BUDGET, name="mcan")
    primary = primary_metric(task)
    values = [h["val_metric"] for h in result.history]
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.best_epoch == values.index(max(values)) + 1  # the earliest of the best
    assert result.val[primary] == max(values)
    # the model now holds the selected weights: evaluating it again gives the reported figures
    model.eval()
    again = evaluate_task(task, model, eval_batches(data, "test", BUDGET), BUDGET.itm_test_images, model.modality)
    assert again == pytest.approx(result.test)
    assert result.parameters == sum(p.numel() for p in model.parameters())
    assert set(result.seconds) == {"train", "eval", "total", "cpu"}


def test_same_seed_same_result_and_itm_reports_retrieval_and_pairwise():
    data = synthetic("itm")
    first = run_baseline("text_only", data, WIDTHS, BUDGET)
    second = run_baseline("text_only", data, WIDTHS, BUDGET)
    assert first.test == second.test and first.history[-1]["train_loss"] == second.history[-1]["train_loss"]
    assert first.test["itm_images"] == 6 and first.test["itm_captions"] == 12  # the first 6 test images, all captions
    assert {"itm_i2t_r1", "itm_t2i_r10", "itm_rsum", "itm_pair_acc"} <= set(first.test)
    # a model that never sees the caption cannot tell a caption from its hard negative
    image_only = run_baseline("image_only", data, WIDTHS, BUDGET)
    assert image_only.test["itm_pair_acc"] == 50.0


def test_chance_levels():
    vg = synthetic("vg")
    chance = chance_levels("vg", eval_batches(vg, "test", BUDGET))["vg_acc"]
    assert 0.0 < chance < 100.0
    itm = synthetic("itm")
    levels = chance_levels("itm", eval_batches(itm, "test", BUDGET), itm_images=6)
    assert levels["itm_t2i_r1"] == pytest.approx(100 / 6) and levels["itm_pair_acc"] == 50.0
    vqa = synthetic("vqa")
    majority = chance_levels("vqa", eval_batches(vqa, "test", BUDGET), vqa.batches("train", batch_size=32, shuffle=False))
    assert 0.0 < majority["vqa_acc"] < 100.0 and majority["vqa_count"] == vqa.num_samples("test")
    with pytest.raises(ValueError, match="train batches"):
        chance_levels("vqa", eval_batches(vqa, "test", BUDGET))
