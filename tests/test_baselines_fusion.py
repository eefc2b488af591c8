"""The two fusion baselines: feature concatenation sees both modalities; late fusion combines its
unimodal members' probabilities as documented and trains each member on its own loss."""
from __future__ import annotations

import pytest
import torch

from mmsearch.baselines import BASELINE_TASKS, build_baseline
from mmsearch.baselines.late_fusion import mean_probability_logit
from mmsearch.baselines.training import _training_loss
from mmsearch.tasks import make_objective
from tests.test_baselines_models import WIDTHS, _perturbed, make_batch, output_shapes, sizes


@pytest.mark.parametrize("task", BASELINE_TASKS)
def test_concat_baseline_reads_both_modalities(task):
    torch.manual_seed(0)
    model = build_baseline("concat", sizes(task), WIDTHS).eval()
    batch = make_batch()
    key = "scores" if task == "vg" else "logits"
    with torch.no_grad():
        out = model(batch)
        output_shapes(task, out, batch)
        for part in ("text", "image"):
            assert not torch.equal(out[key], model(_perturbed(batch, part))[key])


@pytest.mark.parametrize("task", BASELINE_TASKS)
def test_late_fusion_combines_member_probabilities(task):
    torch.manual_seed(0)
    model = build_baseline("late", sizes(task), WIDTHS).eval()
    batch = make_batch()
    with torch.no_grad():
        out, t, i = model(batch), model.text(batch), model.image(batch)
    output_shapes(task, out, batch)
    if task in ("vqa", "itm"):
        p = (torch.sigmoid(t["logits"]) + torch.sigmoid(i["logits"])) / 2
        torch.testing.assert_close(torch.sigmoid(out["logits"]), p)
        if task == "vqa":
            assert torch.equal(out["logits"].argmax(1), p.argmax(1))
        return
    real = ~batch.region_mask
    p = (torch.softmax(t["scores"], 1) + torch.softmax(i["scores"], 1)) / 2
    torch.testing.assert_close(out["scores"].exp()[real], p[real])
    torch.testing.assert_close(out["scores"].exp().sum(1), torch.ones(batch.region_mask.shape[0]))
    torch.testing.assert_close(out["box_deltas"], (t["box_deltas"] + i["box_deltas"]) / 2)


def test_mean_probability_logit_stays_finite():
    big = torch.tensor([60.0, -60.0, 0.0])
    out = mean_probability_logit(big, big)
    assert torch.isfinite(out).all() and out[2] == 0.0


def test_late_fusion_trains_each_member_on_its_own_loss():
    """The training loss is the sum of the members' own losses: the text member's gradient equals
    that of the text-only model trained alone with the same weights."""
    torch.manual_seed(0)
    model = build_baseline("late", sizes("vqa"), WIDTHS)
    objective = make_objective("vqa", reduction="mean")
    batch = make_batch()
    loss = _training_loss(objective, model, batch, 0)
    expected = objective.loss(model.text, batch, 0)[0] + objective.loss(model.image, batch, 0)[0]
    torch.testing.assert_close(loss, expected)
    loss.backward()
    alone = build_baseline("text_only", sizes("vqa"), WIDTHS)
    alone.load_state_dict(model.text.state_dict())
    objective.loss(alone, batch, 0)[0].backward()
    for (name, p), q in zip(model.text.named_parameters(), alone.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    assert all(p.grad is not None for p in model.image.parameters())
