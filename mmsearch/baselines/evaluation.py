"""Evaluation of a baseline on one part, with the real task metrics, and the chance levels.

* vqa: :func:`mmsearch.heads.evaluate` -- soft VQA accuracy overall, per answer type and per
  question family;
* itm: retrieval R@1/5/10 both ways over the first ``itm_images`` images of the part with all
  their captions (every image x caption pair scored, ties counted against the query:
  :func:`mmsearch.metrics.retrieval_recall`), plus
  :func:`itm_pairwise_accuracy` over every caption of the part: how often a true caption
  outscores each of its own hard negatives (one word changed) on its image;
* vg: accuracy at IoU >= 0.5 after refining the top region, mean IoU, per family.

A single-modality model's pair score depends on one side only, so :func:`itm_score_matrix`
scores each caption (or image) once and broadcasts: the same matrix as scoring all pairs, at a
hundredth of the cost.

Chance levels (:func:`chance_levels`): ITM recall of random scores (:func:`mmsearch.metrics.chance_recall`)
and 50% pairwise; VG: the accuracy of picking one of an image's regions uniformly at random
(the mean share of regions with IoU >= 0.5); VQA: the train split's most frequent answer given
to every question.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor

from mmsearch.batch import MultimodalBatch
from mmsearch.tasks import evaluate as evaluate_head
from mmsearch.heads.itm import IMAGE_ID_META, NEG_TEXT_MASK_KEY, dataset_negative_texts, retrieval_sets, score_all_pairs
from mmsearch.heads.pairs import pair_rows
from mmsearch.metrics import VQAAccuracy, box_iou, chance_recall, retrieval_recall

RunFn = Callable[[MultimodalBatch], dict[str, Tensor]]
ITM_KS = (1, 5, 10)
MODALITIES = ("text", "image", "text+image")  # what a model's output depends on
PAIR_CHUNK = 256  # (image, caption) pairs per forward when every pair is scored
# Scores closer than this (relative to 1 + |score|) are a tie: the same input gives results
# that differ in the last bits when it is computed in batches of different shapes.
TIE_TOLERANCE = 1e-5


def first_images(batches: Iterable[MultimodalBatch], num_images: int | None) -> list[MultimodalBatch]:
    """The rows of the first ``num_images`` distinct ``meta["image_id"]`` values (in order), all
    of their captions; ``None`` keeps everything."""
    out, seen = [], set()
    for batch in batches:
        ids = batch.meta.get(IMAGE_ID_META)
        if ids is None:
            raise KeyError(f"itm evaluation needs meta[{IMAGE_ID_META!r}]")
        keep = []
        for row, image_id in enumerate(ids):
            if image_id not in seen and (num_images is None or len(seen) < num_images):
                seen.add(image_id)
            if image_id in seen:
                keep.append(row)
        if keep:
            out.append(batch if len(keep) == batch.batch_size else batch.select(torch.tensor(keep, dtype=torch.long)))
    if not out:
        raise ValueError("itm evaluation got no captions")
    return out


@torch.no_grad()
def itm_pairwise_accuracy(run: RunFn, batches: Iterable[MultimodalBatch]) -> dict[str, float]:
    """Percentage of (caption, own hard negative) pairs where the caption scores higher on its
    image; a tie (within :data:`TIE_TOLERANCE`) counts one half, so a model that ignores the
    text scores exactly 50."""
    wins, count = 0.0, 0
    for batch in batches:
        negatives = dataset_negative_texts(batch)
        if negatives is None:
            raise KeyError(f"itm pairwise accuracy needs the hard negative captions (targets[{NEG_TEXT_MASK_KEY!r}])")
        present = ~batch.targets[NEG_TEXT_MASK_KEY].all(dim=-1)  # [B, K]
        rows, slots = torch.nonzero(present, as_tuple=True)
        if len(rows) == 0:
            continue
        positive = run(batch)["logits"].float()
        negative = run(pair_rows(batch, rows, negatives, rows * present.shape[1] + slots))["logits"].float()
        difference = positive[rows] - negative
        tie = difference.abs() <= TIE_TOLERANCE * (1.0 + positive[rows].abs())
        wins += float(((difference > 0) & ~tie).sum()) + 0.5 * float(tie.sum())
        count += len(rows)
    if count == 0:
        raise ValueError("itm pairwise accuracy: no caption has a hard negative")
    return {"itm_pair_acc": 100.0 * wins / count, "itm_pair_count": float(count)}


@torch.no_grad()
def itm_score_matrix(run: RunFn, images: MultimodalBatch, captions: MultimodalBatch, modality: str = "text+image") -> Tensor:
    """Matching logits ``[num_images, num_captions]``: every pair through ``run``, or for a model
    whose score depends on the ``"text"`` (``"image"``) alone, each caption (image) once."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    if modality == "text+image":
        return score_all_pairs(run, images, captions, PAIR_CHUNK)
    if modality == "text":
        per_caption = torch.cat([run(captions.select(rows))["logits"].float() for rows in torch.arange(captions.batch_size).split(PAIR_CHUNK)])
        return per_caption.unsqueeze(0).expand(images.batch_size, -1)
    per_image = torch.cat([run(images.select(rows))["logits"].float() for rows in torch.arange(images.batch_size).split(PAIR_CHUNK)])
    return per_image.unsqueeze(1).expand(-1, captions.batch_size)


def itm_retrieval(run: RunFn, batches: Sequence[MultimodalBatch], modality: str = "text+image") -> dict[str, float]:
    """Recall@1/5/10 both ways (``itm_i2t_r1`` ... ``itm_rsum``, percent) over all images and captions of ``batches``."""
    images, captions, text_to_image = retrieval_sets(batches)
    similarity = itm_score_matrix(run, images, captions, modality)
    out = {f"itm_{key}": float(value) for key, value in retrieval_recall(similarity, text_to_image, ks=ITM_KS).items()}
    out.update(itm_images=float(images.batch_size), itm_captions=float(captions.batch_size))
    return out


def evaluate_task(
    task: str,
    run: RunFn,
    batches: Sequence[MultimodalBatch],
    itm_images: int | None = None,
    modality: str = "text+image",
) -> dict[str, float]:
    """All metrics of ``task`` on a part's (unshuffled) batches; the model must be in eval mode.
    ``modality``: what the model's output depends on (ITM scores single-modality models once per side)."""
    if task == "itm":
        metrics = itm_retrieval(run, first_images(batches, itm_images), modality)
        metrics.update(itm_pairwise_accuracy(run, batches))
        return metrics
    return evaluate_head(task, run, batches)


def _itm_chance(batches: Sequence[MultimodalBatch], itm_images: int | None) -> dict[str, float]:
    ids = [i for b in first_images(batches, itm_images) for i in b.meta[IMAGE_ID_META]]
    index = {image_id: k for k, image_id in enumerate(dict.fromkeys(ids))}
    recall = chance_recall(len(index), len(ids), torch.tensor([index[i] for i in ids]), ITM_KS)
    return {**{f"itm_{k}": v for k, v in recall.items()}, "itm_pair_acc": 50.0}


def _vg_chance(batches: Sequence[MultimodalBatch], threshold: float = 0.5) -> dict[str, float]:
    shares = []
    for batch in batches:
        iou = box_iou(batch.region_boxes, batch.targets["gt_box"].unsqueeze(1)).squeeze(-1)  # [B, N]
        valid = ~batch.region_mask
        shares.append(((iou >= threshold) & valid).sum(1) / valid.sum(1).clamp(min=1))
    return {"vg_acc": 100.0 * float(torch.cat(shares).mean())}


def _vqa_majority(train: Iterable[MultimodalBatch], batches: Sequence[MultimodalBatch]) -> dict[str, float]:
    total = None
    for batch in train:
        scores = batch.targets["answer_scores"].sum(0)
        total = scores if total is None else total + scores
    if total is None:
        raise ValueError("the train part is empty")
    answer = int(total.argmax())
    accuracy = VQAAccuracy()
    for batch in batches:
        predicted = torch.full((batch.batch_size,), answer, dtype=torch.long)
        accuracy.update(predicted, batch.targets["answer_scores"], batch.meta.get("answer_type"), batch.meta.get("family"))
    return accuracy.compute()


def chance_levels(
    task: str,
    batches: Sequence[MultimodalBatch],
    train: Iterable[MultimodalBatch] | None = None,
    itm_images: int | None = None,
) -> dict[str, float]:
    """The model-free reference levels of ``task`` on a part (see the module docstring); VQA
    needs the ``train`` batches for its majority answer."""
    if task == "itm":
        return _itm_chance(batches, itm_images)
    if task == "vg":
        return _vg_chance(batches)
    if train is None:
        raise ValueError("the vqa reference needs the train batches (majority answer)")
    return _vqa_majority(train, batches)


__all__ = ["MODALITIES", "chance_levels", "evaluate_task", "first_images", "itm_pairwise_accuracy", "itm_retrieval", "itm_score_matrix"]
