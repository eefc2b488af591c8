"""Behaviour every head shares, parametrised over the TASKS registry: output shapes, padding
invariance, fitting a tiny batch through its objective, evaluation, clear errors."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from mmsearch.batch import MultimodalBatch
from mmsearch.config import ConfigError
from mmsearch.tasks import TASKS, build_head, evaluate, head_config, make_objective, predict, primary_metric
from mmsearch.heads.pairs import IMAGE_FIELDS, TEXT_FIELDS
from mmsearch.registry import UnknownNameError

HIDDEN, VOCAB, FEAT, ANSWERS = 16, 24, 8, 5
CONCEPTS = 8  # distinct "objects": an image shows one, its caption names it


def task_overrides(task: str) -> dict:
    extra = {"num_answers": ANSWERS} if task == "vqa" else {}
    return {"dropout": 0.0, "flat_mlp_size": 32, **extra}


def expected_shapes(task: str, batch: int, regions: int) -> dict[str, tuple[int, ...]]:
    return {
        "vqa": {"logits": (batch, ANSWERS), "region_attention": (batch, regions)},
        "itm": {"logits": (batch,)},
        "vg": {"scores": (batch, regions), "box_deltas": (batch, regions, 4)},
    }[task]


class TinyNet(nn.Module):
    """Stands in for the encoder/decoder chains: embeddings plus a multiplicative text->region
    interaction (what guided attention provides in the real networks)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN, padding_idx=0)
        self.region = nn.Linear(FEAT + 4, HIDDEN)
        self.mix = nn.Linear(HIDDEN, HIDDEN)
        self.head = head

    def forward(self, batch: MultimodalBatch) -> dict[str, torch.Tensor]:
        text = self.embed(batch.text_ids)
        regions = torch.tanh(self.region(torch.cat((batch.region_feats, batch.region_boxes / 100), dim=-1)))
        # multiplicative text->region interaction (the first token names the concept)
        regions = torch.tanh(self.mix(regions * text[:, :1]))
        return self.head(text, batch.text_mask, regions, batch.region_mask)


def make_batch(task: str, size: int = 8, tokens: int = 5, regions: int = 6, seed: int = 0) -> MultimodalBatch:
    """Learnable toy data: image i shows concept c_i in its region features, its text names it."""
    g = torch.Generator().manual_seed(seed)
    concept = torch.arange(size) % CONCEPTS
    lengths = torch.randint(2, tokens + 1, (size,), generator=g)
    text_mask = torch.arange(tokens).unsqueeze(0) >= lengths.unsqueeze(1)
    text_ids = torch.randint(CONCEPTS + 1, VOCAB, (size, tokens), generator=g)
    text_ids[:, 0] = concept + 1
    text_ids = text_ids.masked_fill(text_mask, 0)
    counts = torch.randint(3, regions + 1, (size,), generator=g)
    region_mask = torch.arange(regions).unsqueeze(0) >= counts.unsqueeze(1)
    feats = torch.randn(size, regions, FEAT, generator=g) * 0.1
    feats[torch.arange(size), 0, concept % FEAT] += 1.0
    xy = torch.rand(size, regions, 2, generator=g) * 40
    boxes = torch.cat((xy, xy + 10 + torch.rand(size, regions, 2, generator=g) * 40), dim=-1)
    feats = feats.masked_fill(region_mask.unsqueeze(-1), 0.0)
    boxes = boxes.masked_fill(region_mask.unsqueeze(-1), 0.0)
    targets: dict[str, torch.Tensor] = {}
    meta: dict[str, list] = {"image_id": [f"img{i}" for i in range(size)]}
    if task == "vqa":
        scores = torch.zeros(size, ANSWERS)
        scores[torch.arange(size), concept % ANSWERS] = 1.0
        scores[torch.arange(size), (concept + 1) % ANSWERS] = 0.3
        targets["answer_scores"] = scores
        meta["answer_type"] = ["yes/no" if i % 2 else "other" for i in range(size)]
    elif task == "vg":
        shift = torch.tensor([1.0, 2.0, -1.0, 1.0])
        targets["gt_box"] = boxes[:, 0] + shift
    return MultimodalBatch(
        text_mask=text_mask,
        text_ids=text_ids,
        region_feats=feats,
        region_boxes=boxes,
        region_mask=region_mask,
        image_size=torch.tensor([[100.0, 120.0]]).expand(size, 2).clone(),
        targets=targets,
        meta=meta,
    )


def random_streams(size=4, tokens=5, regions=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(size, tokens, HIDDEN, generator=g)
    text_mask = torch.arange(tokens).unsqueeze(0) >= torch.tensor([5, 3, 1, 4]).unsqueeze(1)
    regions_x = torch.randn(size, regions, HIDDEN, generator=g)
    region_mask = torch.arange(regions).unsqueeze(0) >= torch.tensor([7, 2, 5, 6]).unsqueeze(1)
    return text, text_mask, regions_x, region_mask


@pytest.mark.parametrize("task", TASKS.names())
def test_output_shapes(task):
    head = build_head(task, HIDDEN, **task_overrides(task))
    text, text_mask, regions, region_mask = random_streams()
    out = head(text, text_mask, regions, region_mask)
    assert {k: tuple(v.shape) for k, v in out.items()} == expected_shapes(task, 4, 7)
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("task", TASKS.names())
def test_padding_positions_do_not_change_outputs(task):
    head = build_head(task, HIDDEN, **task_overrides(task)).eval()
    text, text_mask, regions, region_mask = random_streams()
    reference = head(text, text_mask, regions, region_mask)
    noisy_text = torch.where(text_mask.unsqueeze(-1), torch.randn_like(text) * 100, text)
    noisy_regions = torch.where(region_mask.unsqueeze(-1), torch.randn_like(regions) * 100, regions)
    perturbed = head(noisy_text, text_mask, noisy_regions, region_mask)
    for key in reference:
        torch.testing.assert_close(perturbed[key], reference[key])
    # and the padding does matter once it is unmasked (the test above is not vacuous)
    unmasked = head(noisy_text, torch.zeros_like(text_mask), noisy_regions, torch.zeros_like(region_mask))
    assert any(not torch.allclose(unmasked[k], reference[k]) for k in reference)


@pytest.mark.parametrize("task", TASKS.names())
def test_objective_fits_a_tiny_batch(task):
    torch.manual_seed(0)
    net = TinyNet(build_head(task, HIDDEN, **task_overrides(task)))
    objective = make_objective(task, **task_overrides(task))
    batch = make_batch(task)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss, logs = objective.loss(net, batch, epoch=0)
        assert loss.dim() == 0 and torch.isfinite(loss)
        assert all(isinstance(v, float) for v in logs.values()) and logs["loss"] == pytest.approx(loss.item())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]


@pytest.mark.parametrize("task", TASKS.names())
def test_gradients_reach_every_head_parameter(task):
    torch.manual_seed(0)
    net = TinyNet(build_head(task, HIDDEN, **task_overrides(task)))
    loss, _ = make_objective(task, **task_overrides(task)).loss(net, make_batch(task), epoch=0)
    loss.backward()
    missing = [name for name, p in net.head.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("task", TASKS.names())
def test_evaluate_reports_the_primary_metric(task):
    torch.manual_seed(0)
    net = TinyNet(build_head(task, HIDDEN, **task_overrides(task))).eval()
    cfg = head_config(task, **task_overrides(task))
    batches = [make_batch(task, seed=1), make_batch(task, size=4, tokens=7, seed=2)]
    if task == "itm":  # distinct images across the two batches
        batches[1].meta["image_id"] = [f"other{i}" for i in range(4)]
    metrics = evaluate(cfg, net, batches)
    assert primary_metric(task) in metrics
    assert all(isinstance(v, float) for v in metrics.values())
    prediction = predict(cfg, net(batches[0]), batches[0])
    assert all(v.shape[0] == 8 for v in prediction.values())


@pytest.mark.parametrize("task", TASKS.names())
def test_wrong_hidden_size_and_masks_are_named(task):
    head = build_head(task, HIDDEN, **task_overrides(task))
    text, text_mask, regions, region_mask = random_streams()
    with pytest.raises(ValueError, match=f"hidden size {HIDDEN}"):
        head(text[..., :-1], text_mask, regions, region_mask)
    with pytest.raises(ValueError, match="region_mask"):
        head(text, text_mask, regions, region_mask[:, :-1])
    with pytest.raises(ValueError, match="bool"):
        head(text, text_mask.float(), regions, region_mask)


def test_config_errors_are_clear():
    with pytest.raises(UnknownNameError, match="known tasks: vqa, itm, vg"):
        build_head("vqq", HIDDEN)
    with pytest.raises(ConfigError, match="num_answer"):
        head_config("vqa", num_answer=3)
    with pytest.raises(ValueError, match="num_answers is not set"):
        build_head("vqa", HIDDEN)
    assert head_config("vgd").task == "vg"


def test_pairing_covers_every_batch_input_field():
    fields = {f.name for f in dataclasses.fields(MultimodalBatch)} - {"targets", "meta"}
    assert fields == set(TEXT_FIELDS) | set(IMAGE_FIELDS)


@pytest.mark.parametrize("task", TASKS.names())
def test_prepare_then_loss_from_outputs_equals_loss(task):
    """The form step functions use (they run the network themselves) gives the same loss."""
    torch.manual_seed(0)
    net = TinyNet(build_head(task, HIDDEN, **task_overrides(task))).eval()
    objective = make_objective(task, **task_overrides(task))
    batch = make_batch(task)
    torch.manual_seed(1)
    direct, direct_logs = objective.loss(net, batch, epoch=0)
    torch.manual_seed(1)
    pairs = objective.prepare(net, batch, epoch=0)
    split, split_logs = objective.loss_from_outputs(net(pairs), pairs)
    assert split.item() == pytest.approx(direct.item(), rel=1e-6)
    assert split_logs == pytest.approx(direct_logs)


def test_attflat_dropout_is_the_ops_cheap_mask_and_matches_the_plain_layer():
    """AttFlat drops its MLP's activations with mmsearch.ops.Dropout (cheaper masks than F.dropout on
    CPU): without dropout it computes exactly what the plain nn.Dropout version does, and with it the
    mean output over many masks stays near the no-dropout one (the masks are unbiased; the softmax
    after them makes it approximate)."""
    import copy

    import torch
    from torch import nn

    from mmsearch.heads.fusion import AttFlat
    from mmsearch.ops import Dropout

    torch.manual_seed(0)
    flat = AttFlat(hidden_size=32, out_size=16, mlp_size=64, dropout=0.3)
    assert isinstance(flat.attention[2], Dropout) and flat.attention[2].p == 0.3
    plain = copy.deepcopy(flat)
    plain.attention[2] = nn.Dropout(0.3)
    x, mask = torch.randn(4, 50, 32), torch.zeros(4, 50, dtype=torch.bool)
    mask[0, 40:] = True
    flat.eval(), plain.eval()
    assert torch.equal(flat(x, mask), plain(x, mask))
    expected = flat(x, mask)
    flat.train()
    with torch.no_grad():
        mean = torch.stack([flat(x, mask) for _ in range(400)]).mean(0)
    assert not torch.equal(flat(x, mask), expected)  # dropout is on in training
    assert torch.allclose(mean, expected, atol=0.05 * expected.abs().max().item())
