"""ITM negatives, hard-negative mining, dataset negatives, loss value and all-pairs scoring.

The network is replaced by a lookup table: a row's image is coded in ``region_feats[:, 0, 0]``
and its caption in ``text_ids[:, 0]``; the "network" returns ``TABLE[image, caption]``, so the
hardest negative of every anchor is known in advance.
"""
from __future__ import annotations

import math

import pytest
import torch

from mmsearch.batch import MultimodalBatch
from mmsearch.tasks import make_objective
from mmsearch.heads.itm import retrieval_sets, score_all_pairs

IMAGE_OF_ROW = [0, 0, 0, 1, 1, 2, 2, 3, 3, 4]  # 5 images, several captions each
NUM_TEXT_CODES = 64
TABLE = torch.randn(5, NUM_TEXT_CODES, generator=torch.Generator().manual_seed(0))


class TableRun:
    def __init__(self) -> None:
        self.calls: list[MultimodalBatch] = []

    def __call__(self, batch: MultimodalBatch) -> dict[str, torch.Tensor]:
        self.calls.append(batch)
        return {"logits": TABLE[batch.region_feats[:, 0, 0].long(), batch.text_ids[:, 0]]}


def itm_batch(image_of_row=IMAGE_OF_ROW, with_ids=True, tokens=3) -> MultimodalBatch:
    size = len(image_of_row)
    feats = torch.zeros(size, 2, 4)
    feats[:, 0, 0] = torch.tensor(image_of_row, dtype=torch.float32)
    text_ids = torch.ones(size, tokens, dtype=torch.long)
    text_ids[:, 0] = torch.arange(size)  # caption code = row
    meta = {"image_id": [f"img{i}" for i in image_of_row]} if with_ids else {}
    return MultimodalBatch(
        text_mask=torch.zeros(size, tokens, dtype=torch.bool),
        text_ids=text_ids,
        region_feats=feats,
        region_boxes=torch.zeros(size, 2, 4),
        region_mask=torch.zeros(size, 2, dtype=torch.bool),
        meta=meta,
    )


def add_dataset_negatives(batch: MultimodalBatch, per_row: int = 3, absent_rows=(2,)) -> torch.Tensor:
    """Hard-negative captions with codes 20 + row * per_row + k; returns those codes [B, K]."""
    size, tokens = batch.text_ids.shape
    codes = 20 + torch.arange(size * per_row).view(size, per_row)
    ids = torch.ones(size, per_row, tokens + 1, dtype=torch.long)  # longer than the captions: padded when paired
    ids[:, :, 0] = codes
    mask = torch.zeros(size, per_row, tokens + 1, dtype=torch.bool)
    mask[:, :, -1] = True
    for row in absent_rows:
        mask[row] = True
        ids[row] = 0
    batch.targets.update(neg_text_ids=ids, neg_text_mask=mask)
    return codes


def test_negatives_are_never_the_image_of_the_anchor():
    batch = itm_batch()
    images = torch.tensor(IMAGE_OF_ROW)
    for seed in range(20):
        torch.manual_seed(seed)
        for candidates in (1, 3):
            neg = make_objective("itm", num_candidates=candidates).mine(TableRun(), batch, epoch=0)
            assert neg.caption_valid.all() and neg.image_valid.all()
            assert (images[neg.caption_rows] != images[neg.anchors]).all()
            assert (images[neg.image_rows] != images[neg.anchors]).all()


def test_hardest_of_all_candidates_is_chosen():
    batch = itm_batch()
    images = torch.tensor(IMAGE_OF_ROW)
    neg = make_objective("itm", num_candidates=len(IMAGE_OF_ROW)).mine(TableRun(), batch, epoch=0)
    rows = torch.arange(len(IMAGE_OF_ROW))
    for anchor in range(len(IMAGE_OF_ROW)):
        other = images != images[anchor]
        caption_scores = TABLE[images[anchor], rows].masked_fill(~other, -math.inf)
        assert neg.caption_rows[anchor] == caption_scores.argmax()
        image_scores = TABLE[images, anchor].masked_fill(~other, -math.inf)
        assert images[neg.image_rows[anchor]] == images[image_scores.argmax()]


def test_mining_scores_candidates_without_grad_in_one_extra_forward():
    batch = itm_batch()
    run = TableRun()
    make_objective("itm", num_candidates=3).loss(run, batch, epoch=0)
    assert len(run.calls) == 2
    assert run.calls[0].batch_size == 2 * 3 * len(IMAGE_OF_ROW)  # caption and image candidates
    assert run.calls[1].batch_size == 3 * len(IMAGE_OF_ROW)  # positives + two negatives each


def test_random_negatives_before_the_start_epoch():
    batch = itm_batch()
    objective = make_objective("itm", num_candidates=4, hard_negatives_from_epoch=5)
    chosen = set()
    for seed in range(10):
        torch.manual_seed(seed)
        run = TableRun()
        objective.loss(run, batch, epoch=4)
        assert len(run.calls) == 1  # no scoring pass
        chosen.add(tuple(run.calls[0].text_ids[len(IMAGE_OF_ROW) : 2 * len(IMAGE_OF_ROW), 0].tolist()))
    assert len(chosen) > 1
    run = TableRun()
    objective.loss(run, batch, epoch=5)
    assert len(run.calls) == 2


def test_without_image_ids_every_other_row_is_a_negative():
    batch = itm_batch(with_ids=False)
    torch.manual_seed(0)
    neg = make_objective("itm", num_candidates=1).mine(TableRun(), batch)
    assert (neg.caption_rows != neg.anchors).all() and (neg.image_rows != neg.anchors).all()


def test_loss_value_weights_the_positive_once_per_negative_term():
    batch = itm_batch([0, 1, 2])
    run = TableRun()
    torch.manual_seed(0)
    loss, logs = make_objective("itm", num_candidates=1).loss(run, batch)
    logits = TableRun()(run.calls[-1])["logits"]
    pos, cap, img = logits.view(3, 3)
    softplus = torch.nn.functional.softplus
    expected = (2 * softplus(-pos) + softplus(cap) + softplus(img)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert logs["itm_caption_rank_acc"] == pytest.approx(100 * (pos > cap).float().mean().item())
    torch.manual_seed(0)  # the same random negatives
    mean_loss, _ = make_objective("itm", num_candidates=1, reduction="mean").loss(run, batch)
    assert mean_loss.item() == pytest.approx(expected.item() / 3, rel=1e-6)


def test_single_pair_batch_has_no_in_batch_negative():
    neg = make_objective("itm").mine(TableRun(), itm_batch([3]))
    assert not neg.caption_valid.any() and not neg.image_valid.any()
    loss, _ = make_objective("itm").loss(TableRun(), itm_batch([3]))
    assert loss.item() == pytest.approx(2 * torch.nn.functional.softplus(-TABLE[3, 0]).item(), rel=1e-6)


def test_rows_marked_mismatched_are_given_negatives():
    batch = itm_batch([0, 1, 2, 3])
    batch.targets["match"] = torch.tensor([1.0, 0.0, 1.0, 1.0])
    objective = make_objective("itm", num_candidates=4)
    neg = objective.mine(TableRun(), batch)
    assert neg.anchors.tolist() == [0, 2, 3] and neg.given.tolist() == [1]
    assert 1 not in neg.caption_rows.tolist() and 1 not in neg.image_rows.tolist()
    run = TableRun()
    objective.loss(run, batch)
    final = run.calls[-1]
    assert final.batch_size == 3 * 3 + 1
    assert final.text_ids[-1, 0] == 1 and final.region_feats[-1, 0, 0] == 1  # the given pair, as it is


def test_dataset_hard_negatives_hardest_is_used():
    batch = itm_batch()
    codes = add_dataset_negatives(batch)
    images = torch.tensor(IMAGE_OF_ROW)
    run = TableRun()
    objective = make_objective("itm", num_candidates=2)
    torch.manual_seed(0)
    neg = objective.mine(run, batch, epoch=0)
    assert neg.dataset_valid.tolist() == [row != 2 for row in range(len(IMAGE_OF_ROW))]
    for row in range(len(IMAGE_OF_ROW)):
        if row != 2:
            assert neg.dataset_index[row] == TABLE[images[row], codes[row]].argmax()
    torch.manual_seed(0)
    run = TableRun()
    loss, logs = objective.loss(run, batch, epoch=0)
    final = run.calls[-1]
    size = len(IMAGE_OF_ROW)
    assert final.batch_size == 4 * size  # positives, two in-batch negatives, one dataset negative each
    assert final.text_ids.shape[1] == batch.text_ids.shape[1] + 1  # padded to the longer negatives
    used = final.text_ids[3 * size :, 0]
    for row in range(size):
        if row != 2:
            assert used[row] == codes[row, neg.dataset_index[row]]
    assert "itm_dataset_rank_acc" in logs and torch.isfinite(loss)


def test_dataset_negatives_random_before_start_and_switchable():
    batch = itm_batch()
    codes = add_dataset_negatives(batch, absent_rows=())
    objective = make_objective("itm", num_candidates=1, hard_negatives_from_epoch=3)
    picks = set()
    for seed in range(8):
        torch.manual_seed(seed)
        run = TableRun()
        objective.loss(run, batch, epoch=0)
        assert len(run.calls) == 1
        picks.add(int(run.calls[0].text_ids[3 * len(IMAGE_OF_ROW), 0]))
    assert picks <= set(codes[0].tolist()) and len(picks) > 1
    run = TableRun()
    make_objective("itm", use_dataset_negatives=False).loss(run, batch)
    assert run.calls[-1].batch_size == 3 * len(IMAGE_OF_ROW)


def test_bad_dataset_negatives_are_named():
    batch = itm_batch()
    add_dataset_negatives(batch)
    batch.targets.pop("neg_text_ids")
    with pytest.raises(KeyError, match="neg_text_ids"):
        make_objective("itm").loss(TableRun(), batch)
    batch.targets["neg_text_mask"] = batch.targets["neg_text_mask"][:, 0]
    with pytest.raises(ValueError, match=r"bool \[B, K, T\]"):
        make_objective("itm").loss(TableRun(), batch)


def test_score_all_pairs_matches_the_table_for_any_chunk():
    batch = itm_batch()
    images, captions, text_to_image = retrieval_sets([batch])
    assert text_to_image.tolist() == IMAGE_OF_ROW
    assert images.batch_size == 5
    for chunk in (7, 50, 1000):
        similarity = score_all_pairs(TableRun(), images, captions, chunk=chunk)
        torch.testing.assert_close(similarity, TABLE[:, : len(IMAGE_OF_ROW)])


def test_evaluation_recalls():
    from mmsearch.tasks import evaluate

    batch = itm_batch()
    perfect = lambda b: {"logits": (b.region_feats[:, 0, 0] == torch.tensor(IMAGE_OF_ROW, dtype=torch.float32)[b.text_ids[:, 0]]).float()}  # noqa: E731
    metrics = evaluate("itm", perfect, [batch])
    recalls = [metrics[f"itm_{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)]
    assert recalls == [100.0] * 6 and metrics["itm_rsum"] == 600.0
    assert metrics["itm_images"] == 5 and metrics["itm_captions"] == len(IMAGE_OF_ROW)
    # a scorer that prefers image 0 for every caption: text->image R@1 is the share of image 0's captions
    biased = evaluate("itm", lambda b: {"logits": -b.region_feats[:, 0, 0]}, [batch])
    assert biased["itm_t2i_r1"] == pytest.approx(100 * 3 / len(IMAGE_OF_ROW))


def test_prepared_pairs_carry_labels_weights_and_terms():
    batch = itm_batch([0, 1, 2, 3])
    batch.targets["match"] = torch.tensor([1.0, 1.0, 0.0, 1.0])
    add_dataset_negatives(batch, per_row=2, absent_rows=(1,))
    pairs = make_objective("itm", num_candidates=2).prepare(TableRun(), batch)
    assert pairs.targets["itm_term"].tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] + [4] * 3
    assert pairs.targets["itm_label"].tolist() == [1.0] * 3 + [0.0] * 10
    # three negative terms -> positives weigh 3; anchor row 1 has no dataset negative
    assert pairs.targets["itm_weight"].tolist() == [3.0] * 3 + [1.0] * 7 + [1.0, 0.0, 1.0]
    assert pairs.targets["itm_anchor"].tolist() == [0, 1, 2] * 3 + [-1] + [0, 1, 2]


def test_loss_from_outputs_needs_a_prepared_batch():
    batch = itm_batch([0, 1])
    with pytest.raises(KeyError, match="prepare"):
        make_objective("itm").loss_from_outputs(TableRun()(batch), batch)


def test_dataset_negatives_as_frozen_encoder_states():
    """Batches with per-token encoder states (FuseMix-style text) carry neg_text_states instead."""
    batch = itm_batch([0, 1, 2])
    states = torch.zeros(3, 3, 2)
    states[:, 0, 0] = torch.arange(3.0)
    batch.text_states, batch.text_ids = states, None
    neg_states = torch.zeros(3, 2, 4, 2)
    neg_states[:, :, 0, 0] = 20 + torch.arange(6.0).view(3, 2)
    mask = torch.zeros(3, 2, 4, dtype=torch.bool)
    batch.targets.update(neg_text_states=neg_states, neg_text_mask=mask)

    def run(b):
        return {"logits": TABLE[b.region_feats[:, 0, 0].long(), b.text_states[:, 0, 0].long()]}

    objective = make_objective("itm", num_candidates=2)
    pairs = objective.prepare(run, batch)
    assert pairs.text_ids is None and pairs.text_states.shape == (12, 4, 2)
    assert pairs.text_mask[:9, 3].all() and not pairs.text_mask[9:, 3].any()  # captions padded to 4 tokens
    chosen = pairs.text_states[9:, 0, 0].long()
    for row in range(3):
        assert chosen[row] == 20 + 2 * row + TABLE[row, 20 + 2 * row : 22 + 2 * row].argmax()
    loss, _ = objective.loss_from_outputs(run(pairs), pairs)
    assert torch.isfinite(loss)
    batch.targets["neg_text_states"] = neg_states[..., :1]
    with pytest.raises(ValueError, match="neg_text_states"):
        objective.prepare(run, batch)


def test_retrieval_sets_hold_each_image_once_across_batches():
    first, second = itm_batch([0, 0, 1]), itm_batch([1, 2, 2, 3], tokens=5)
    second.targets["match"] = torch.tensor([1.0, 1.0, 1.0, 0.0])  # the last row is not a caption of its image
    images, captions, text_to_image = retrieval_sets([first, second])
    assert images.batch_size == 3 and images.region_feats[:, 0, 0].tolist() == [0.0, 1.0, 2.0]
    assert captions.batch_size == 6 and captions.region_feats is None and captions.text_ids.shape[1] == 5
    assert text_to_image.tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(KeyError, match="image_id"):
        retrieval_sets([itm_batch([0, 1], with_ids=False)])


def _head(fusion: str, hidden: int = 16):
    from mmsearch.heads.config import ITMHeadConfig
    from mmsearch.heads.itm import ITMHead

    torch.manual_seed(0)
    return ITMHead(ITMHeadConfig(fusion=fusion, flat_mlp_size=16, dropout=0.0), hidden)


def test_bilinear_fusion_adds_a_scaled_dot_product_at_initialisation():
    """With the same weights otherwise, the bilinear head scores MMnas's sum head plus
    t . r / sqrt(d) of the two reduced streams (W starts at the identity)."""
    plain, bilinear = _head("sum"), _head("sum_bilinear")
    bilinear.load_state_dict(plain.state_dict(), strict=False)
    assert bilinear.bilinear is not None and plain.bilinear is None
    text, regions = torch.randn(5, 3, 16), torch.randn(5, 4, 16)
    masks = torch.zeros(5, 3, dtype=torch.bool), torch.zeros(5, 4, dtype=torch.bool)
    args = (text, masks[0], regions, masks[1])
    t, r = bilinear.fusion.pooled(*args)
    expected = plain(*args)["logits"] + (t * r).sum(-1) / t.shape[-1] ** 0.5
    assert torch.allclose(bilinear(*args)["logits"], expected, atol=1e-5)


def _held_out_accuracy_on_a_matching_rule(fusion: str) -> float:
    """Train a head on pairs labelled by the sign of the dot product of their text and region
    vectors (a caption matches an image only jointly), then score fresh pairs. The streams have one
    position each, so everything learned is in the head itself."""
    head = _head(fusion, hidden=8)
    generator = torch.Generator().manual_seed(1)
    mask = torch.zeros(512, 1, dtype=torch.bool)

    def pairs():
        text, regions = torch.randn(512, 1, 8, generator=generator), torch.randn(512, 1, 8, generator=generator)
        return text, regions, ((text[:, 0] * regions[:, 0]).sum(-1) > 0).float()

    text, regions, label = pairs()
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(text, mask, regions, mask)["logits"], label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    text, regions, label = pairs()
    head.eval()
    return ((head(text, mask, regions, mask)["logits"] > 0).float() == label).float().mean().item()


def test_the_bilinear_head_learns_a_matching_rule_the_sum_head_does_not():
    bilinear, plain = _held_out_accuracy_on_a_matching_rule("sum_bilinear"), _held_out_accuracy_on_a_matching_rule("sum")
    assert bilinear > 0.85 and bilinear - plain > 0.1, (bilinear, plain)


def test_unknown_itm_fusion_is_named():
    from mmsearch.config import ConfigError, validate_config
    from mmsearch.heads.config import ITMHeadConfig

    with pytest.raises((ConfigError, ValueError), match="fusion"):
        validate_config(ITMHeadConfig, {"fusion": "product"})
