"""Baseline models: every baseline builds for every task, emits the head contract, trains with
the real objectives, and sees only its own modality."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsearch.baselines import BASELINE_TASKS, BASELINES, DataSizes, Widths, build_baseline, small_mcan_spec
from mmsearch.baselines.evaluation import itm_pairwise_accuracy, itm_score_matrix
from mmsearch.batch import MultimodalBatch
from mmsearch.tasks import make_objective
from mmsearch.heads.itm import retrieval_sets, score_all_pairs

VOCAB, REGION_DIM, ANSWERS, MAX_REGIONS = 30, 24, 7, 9
WIDTHS = Widths(hidden=32, flat_mlp=32, head_dim=16, depth=1, dropout=0.0)


def sizes(task: str, embedding_init: np.ndarray | None = None) -> DataSizes:
    return DataSizes(task=task, region_dim=REGION_DIM, vocab_size=VOCAB, num_answers=ANSWERS, max_regions=MAX_REGIONS,
                     embedding_init=embedding_init)


def make_batch(b: int = 6, t: int = 5, n: int = 7, k: int = 2, seed: int = 0) -> MultimodalBatch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, t + 1, (b,), generator=g)
    text_mask = torch.arange(t)[None] >= lengths[:, None]
    regions = torch.randint(3, n + 1, (b,), generator=g)
    region_mask = torch.arange(n)[None] >= regions[:, None]
    xy = torch.rand(b, n, 2, generator=g) * 60
    boxes = torch.cat((xy, xy + 4 + torch.rand(b, n, 2, generator=g) * 40), dim=-1)
    ids = torch.randint(2, VOCAB, (b, t), generator=g).masked_fill(text_mask, 0)
    neg_mask = torch.arange(t)[None, None] >= torch.randint(2, t + 1, (b, k), generator=g)[..., None]
    neg_mask[0, 1] = True  # an absent negative
    answers = torch.zeros(b, ANSWERS)
    answers[torch.arange(b), torch.randint(0, ANSWERS, (b,), generator=g)] = 1.0
    gt = boxes[torch.arange(b), 0] + torch.randn(b, 4, generator=g)
    return MultimodalBatch(
        text_mask=text_mask,
        text_ids=ids,
        region_feats=torch.randn(b, n, REGION_DIM, generator=g).masked_fill(region_mask[..., None], 0.0),
        region_boxes=boxes,
        region_mask=region_mask,
        image_size=torch.full((b, 2), 128.0),
        targets={
            "answer_scores": answers,
            "gt_box": gt,
            "neg_text_mask": neg_mask,
            "neg_text_ids": torch.randint(2, VOCAB, (b, k, t), generator=g).masked_fill(neg_mask, 0),
        },
        meta={"image_id": [f"img{i // 2}" for i in range(b)], "answer_type": ["other"] * b, "family": ["exist"] * b},
    )


def output_shapes(task: str, out: dict[str, torch.Tensor], batch: MultimodalBatch) -> None:
    b, n = batch.region_mask.shape
    if task == "vqa":
        assert out["logits"].shape == (b, ANSWERS)
    elif task == "itm":
        assert out["logits"].shape == (b,)
    else:
        assert out["scores"].shape == (b, n) and out["box_deltas"].shape == (b, n, 4)
        # padded regions can never be the prediction, and carry no deltas
        assert (out["scores"][batch.region_mask] < -1e30).all()
        assert (out["box_deltas"][batch.region_mask] == 0).all()
    for value in out.values():
        assert torch.isfinite(value).all()


@pytest.mark.parametrize("task", BASELINE_TASKS)
@pytest.mark.parametrize("name", BASELINES.names())
def test_every_baseline_builds_for_every_task_and_trains_with_the_real_objective(name, task):
    torch.manual_seed(0)
    model = build_baseline(name, sizes(task), WIDTHS)
    batch = make_batch()
    output_shapes(task, model(batch), batch)
    objective = make_objective(task, **({"num_candidates": 2} if task == "itm" else {}))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss, _ = objective.loss(model, batch, epoch=0)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]  # it learns (fits one batch)


def _perturbed(batch: MultimodalBatch, part: str) -> MultimodalBatch:
    """The batch with one modality replaced by other values (same shapes and masks)."""
    g = torch.Generator().manual_seed(7)
    changes = dict(batch.__dict__)
    if part == "text":
        changes["text_ids"] = torch.randint(2, VOCAB, batch.text_ids.shape, generator=g).masked_fill(batch.text_mask, 0)
    else:
        changes["region_feats"] = torch.randn(batch.region_feats.shape, generator=g)
        changes["region_boxes"] = batch.region_boxes.flip(1)
    return MultimodalBatch(**changes)


@pytest.mark.parametrize("task", BASELINE_TASKS)
def test_single_modality_baselines_ignore_the_other_modality(task):
    torch.manual_seed(0)
    batch = make_batch()
    text_model = build_baseline("text_only", sizes(task), WIDTHS).eval()
    image_model = build_baseline("image_only", sizes(task), WIDTHS).eval()
    fused = build_baseline("mcan", sizes(task), WIDTHS).eval()
    key = "scores" if task == "vg" else "logits"
    with torch.no_grad():
        assert torch.equal(text_model(batch)[key], text_model(_perturbed(batch, "image"))[key])
        assert not torch.equal(text_model(batch)[key], text_model(_perturbed(batch, "text"))[key])
        assert torch.equal(image_model(batch)[key], image_model(_perturbed(batch, "text"))[key])
        assert not torch.equal(image_model(batch)[key], image_model(_perturbed(batch, "image"))[key])
        for part in ("text", "image"):
            assert not torch.equal(fused(batch)[key], fused(_perturbed(batch, part))[key])


def test_text_only_vg_scores_region_slots_not_regions():
    torch.manual_seed(0)
    model = build_baseline("text_only", sizes("vg"), WIDTHS).eval()
    batch = make_batch(n=MAX_REGIONS)
    with torch.no_grad():
        scores = model(batch)["scores"]
    valid = ~batch.region_mask
    # one score per slot from the text: two rows with the same text rank the slots identically
    same_text = MultimodalBatch(**{**batch.__dict__, "text_ids": batch.text_ids[:1].expand_as(batch.text_ids),
                                   "text_mask": batch.text_mask[:1].expand_as(batch.text_mask)})
    with torch.no_grad():
        shared = model(same_text)["scores"]
    both = valid[0] & valid[1]
    assert torch.equal(shared[0][both], shared[1][both])
    assert torch.isfinite(scores[valid]).all()
    with pytest.raises(ValueError, match="max_regions"):
        model(make_batch(n=MAX_REGIONS + 2))


def test_pretrained_rows_initialise_the_token_embedding_of_text_models():
    rows = np.random.default_rng(0).normal(size=(VOCAB, 12)).astype(np.float32)
    for name in ("text_only", "mcan"):
        model = build_baseline(name, sizes("vqa", rows), WIDTHS)
        embedding = next(m for m in model.modules() if isinstance(m, torch.nn.Embedding))
        assert embedding.weight.shape == (VOCAB, 12) and torch.allclose(embedding.weight, torch.from_numpy(rows))


def test_small_mcan_is_the_head_of_the_shipped_spec():
    spec = small_mcan_spec(2)
    assert spec.enc == ("self_att", "feed_forward") * 2
    assert spec.dec == ("self_att", "guided_att", "feed_forward") * 2
    with pytest.raises(ValueError, match="depth"):
        small_mcan_spec(7)


@pytest.mark.parametrize("name", ["text_only", "image_only"])
def test_factorised_itm_scores_equal_scoring_every_pair(name):
    torch.manual_seed(0)
    model = build_baseline(name, sizes("itm"), WIDTHS).eval()
    images, captions, _ = retrieval_sets([make_batch(b=8)])
    fast = itm_score_matrix(model, images, captions, model.modality)
    slow = score_all_pairs(model, images, captions, chunk=5)
    assert fast.shape == slow.shape == (4, 8)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_pairwise_accuracy_counts_ties_as_half_and_skips_absent_negatives():
    batch = make_batch()
    present = int((~batch.targets["neg_text_mask"].all(-1)).sum())
    constant = lambda b: {"logits": torch.zeros(b.batch_size)}  # noqa: E731
    out = itm_pairwise_accuracy(constant, [batch])
    assert out == {"itm_pair_acc": 50.0, "itm_pair_count": float(present)}
    # a scorer that knows the true caption: the positive's ids are the batch's own
    truth = {tuple(r.tolist()) for r in batch.text_ids}
    oracle = lambda b: {"logits": torch.tensor([1.0 if tuple(r.tolist()) in truth else 0.0 for r in b.text_ids])}  # noqa: E731
    assert itm_pairwise_accuracy(oracle, [batch])["itm_pair_acc"] == 100.0


def test_bad_sizes_fail_clearly():
    with pytest.raises(ValueError, match="num_answers"):
        DataSizes(task="vqa", region_dim=8, vocab_size=10)
    with pytest.raises(ValueError, match="max_regions"):
        DataSizes(task="vg", region_dim=8, vocab_size=10)
    with pytest.raises(ValueError, match="unknown task"):
        DataSizes(task="caption", region_dim=8, vocab_size=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiple of head_dim"):
        Widths(hidden=30, head_dim=16)
    with pytest.raises(KeyError, match="unknown baseline"):
        build_baseline("resnet", sizes("vqa"))
