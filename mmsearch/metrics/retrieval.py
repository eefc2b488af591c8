"""Cross-modal retrieval recall@K with several texts (captions) per image.

Protocol (as the standard Flickr30K / COCO evaluation):
  * image -> text: an image is a hit at K if *any* of its captions is among its K best texts;
  * text -> image: a caption is a hit at K if its one image is among its K best images.
Recalls are percentages (0-100); ``rsum`` is the sum of all image->text and text->image recalls.
"Image" and "text" name the two sides only: "image" is the side with one row per item, "text" the
side with one or more rows per item (``text_to_image`` maps each text row to its item).

Ties are resolved against the query, deterministically and independent of row order: the rank of
the ground truth is the number of *wrong* candidates whose score is greater than or equal to the
best ground-truth score. So a constant score matrix gets no credit for lucky ordering, and two
captions of the same image never push each other down.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def _check_inputs(n_images: int, n_texts: int, text_to_image: Tensor, ks: Sequence[int]) -> Tensor:
    text_to_image = torch.as_tensor(text_to_image)
    if text_to_image.ndim != 1 or text_to_image.shape[0] != n_texts:
        raise ValueError(f"text_to_image must have shape [{n_texts}] (one image per text), got {tuple(text_to_image.shape)}")
    if text_to_image.dtype.is_floating_point or text_to_image.dtype == torch.bool:
        raise ValueError(f"text_to_image must hold integer image indices, got dtype {text_to_image.dtype}")
    if n_images == 0 or n_texts == 0:
        raise ValueError(f"retrieval needs at least one image and one text, got {n_images} images and {n_texts} texts")
    text_to_image = text_to_image.long()
    if int(text_to_image.min()) < 0 or int(text_to_image.max()) >= n_images:
        raise ValueError(f"text_to_image holds indices outside [0, {n_images})")
    captions_per_image = torch.bincount(text_to_image, minlength=n_images)
    if bool((captions_per_image == 0).any()):
        missing = int((captions_per_image == 0).sum())
        raise ValueError(f"{missing} of {n_images} images have no text; image->text recall is undefined for them")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    return text_to_image


def _check_finite(name: str, values: Tensor) -> None:
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def _image_to_text_ranks(sim_rows: Tensor, image_ids: Tensor, text_to_image: Tensor) -> Tensor:
    """Ranks (0 = first) of the best caption for rows of ``sim`` [c, n_texts] of images ``image_ids``."""
    positive = text_to_image[None, :] == image_ids[:, None]
    best_positive = sim_rows.masked_fill(~positive, float("-inf")).amax(dim=1, keepdim=True)
    return ((sim_rows >= best_positive) & ~positive).sum(dim=1)


def _text_to_image_ranks(sim_cols: Tensor, gt_images: Tensor) -> Tensor:
    """Ranks of the ground-truth image for texts given ``sim_cols`` [c, n_images] (text rows)."""
    gt_score = sim_cols.gather(1, gt_images[:, None])
    return (sim_cols >= gt_score).sum(dim=1) - 1  # the ground truth itself is counted once


def recall_from_ranks(i2t_ranks: Tensor, t2i_ranks: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K (percent) from 0-based ranks, plus per-direction means, overall mean and rsum."""
    out: dict[str, float] = {}
    for direction, ranks in (("i2t", i2t_ranks), ("t2i", t2i_ranks)):
        values = [100.0 * float((ranks < int(k)).double().mean()) for k in ks]
        out.update({f"{direction}_r{int(k)}": v for k, v in zip(ks, values)})
        out[f"{direction}_mean"] = sum(values) / len(values)
    recalls = [out[f"{d}_r{int(k)}"] for d in ("i2t", "t2i") for k in ks]
    out["r_mean"] = sum(recalls) / len(recalls)
    out["rsum"] = sum(recalls)
    return out


def retrieval_recall(sim: Tensor, text_to_image: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K both ways from a full score matrix.

    Args:
        sim: ``[num_images, num_texts]`` scores (higher = more similar).
        text_to_image: ``[num_texts]`` index of each text's image.
        ks: cut-offs.
    Returns:
        ``{"i2t_r1", "i2t_r5", "i2t_r10", "i2t_mean", "t2i_r1", ..., "t2i_mean", "r_mean", "rsum"}``
        (keys follow ``ks``), recalls in percent.
    """
    sim = torch.as_tensor(sim)
    if sim.ndim != 2:
        raise ValueError(f"sim must be [num_images, num_texts], got shape {tuple(sim.shape)}")
    n_images, n_texts = sim.shape
    text_to_image = _check_inputs(n_images, n_texts, text_to_image, ks).to(sim.device)
    _check_finite("sim", sim)
    i2t = _image_to_text_ranks(sim, torch.arange(n_images, device=sim.device), text_to_image)
    t2i = _text_to_image_ranks(sim.T, text_to_image)
    return recall_from_ranks(i2t, t2i, ks)


@torch.no_grad()
def retrieval_recall_chunked(
    image_emb: Tensor,
    text_emb: Tensor,
    text_to_image: Tensor,
    ks: Sequence[int] = (1, 5, 10),
    *,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Same as :func:`retrieval_recall` with ``sim = image_emb @ text_emb.T``, in row chunks.

    Peak memory is O(chunk_size * max(num_images, num_texts)) instead of the full matrix, so
    large evaluation sets (e.g. 25k captions x 5k images) fit in a small budget.
    """
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"embeddings must be [n, d] with the same d, got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n_images, n_texts = image_emb.shape[0], text_emb.shape[0]
    text_to_image = _check_inputs(n_images, n_texts, text_to_image, ks).to(image_emb.device)
    _check_finite("image embeddings", image_emb)
    _check_finite("text embeddings", text_emb)
    i2t = torch.cat([
        _image_to_text_ranks(image_emb[s : s + chunk_size] @ text_emb.T,
                             torch.arange(s, min(s + chunk_size, n_images), device=image_emb.device), text_to_image)
        for s in range(0, n_images, chunk_size)
    ])
    t2i = torch.cat([
        _text_to_image_ranks(text_emb[s : s + chunk_size] @ image_emb.T, text_to_image[s : s + chunk_size])
        for s in range(0, n_texts, chunk_size)
    ])
    return recall_from_ranks(i2t, t2i, ks)


def chance_recall(n_images: int, n_texts: int, text_to_image: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Expected recall@K (percent) of random scores: the level a trained model must beat.

    t->i: K / n_images. i->t for an image with c captions among n texts: 1 - C(n-c, K) / C(n, K).
    """
    text_to_image = _check_inputs(n_images, n_texts, text_to_image, ks)
    counts = torch.bincount(text_to_image, minlength=n_images).double()
    out: dict[str, float] = {}
    for k in ks:
        k = int(k)
        miss = torch.ones_like(counts)  # P(no caption in the top K) = prod_{r<K} (n - c - r) / (n - r)
        for r in range(min(k, n_texts)):
            miss = miss * ((n_texts - counts - r).clamp(min=0) / (n_texts - r))
        out[f"i2t_r{k}"] = 100.0 * float((1 - miss).mean())
        out[f"t2i_r{k}"] = 100.0 * min(1.0, k / n_images)
    return out
