"""Image-text matching: a matching logit per (image, caption) pair, trained with BCE on positive
pairs and mined negative pairs, evaluated by retrieval over all pairs.

Batch contract read here:
  * every row is a positive pair unless ``targets["match"]`` ``[B]`` (float/bool) marks it 0;
    rows with match 0 are scored as given negatives and never used to build new pairs;
  * ``meta["image_id"]`` (list, one id per row) tells which rows show the same image, so a
    re-paired caption of the same image is never used as a negative. Without it every row is
    taken to be a different image (collate it whenever an image can appear twice in a batch);
  * optional dataset hard negatives (captions with one attribute or relation swapped):
    ``targets["neg_text_mask"]`` ``[B, K, T]`` bool (True = padding; an all-padding row is an
    absent negative) plus ``targets["neg_text_ids"]`` ``[B, K, T]`` int64 when the batch has
    ``text_ids`` and ``targets["neg_text_states"]`` ``[B, K, T, Dt]`` when it has ``text_states``.

Each training step runs the network once without grad to score candidates (when mining) and
once with grad on all pairs of the step together (positives and negatives share one forward,
so a supernet samples one path for the whole comparison). ``ITMObjective.prepare`` builds that
pair batch and ``loss_from_outputs`` scores it, so step functions that call the network
themselves (``objective(outputs, batch)``) work unchanged on the prepared batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.heads.config import ITMHeadConfig
from mmsearch.heads.fusion import FusedReduction
from mmsearch.heads.objective import RunFn, require_output, to_floats
from mmsearch.heads.pairs import IMAGE_FIELDS, TEXT_FIELDS, concat_batches, first_rows_by_key, pair_rows
from mmsearch.metrics.retrieval import retrieval_recall

MATCH_KEY = "match"
NEG_TEXT_MASK_KEY = "neg_text_mask"
NEG_TEXT_IDS_KEY = "neg_text_ids"
NEG_TEXT_STATES_KEY = "neg_text_states"
IMAGE_ID_META = "image_id"
# Targets of a batch made by ITMObjective.prepare (the pairs one step trains on).
ITM_LABEL_KEY, ITM_WEIGHT_KEY, ITM_TERM_KEY, ITM_ANCHOR_KEY = "itm_label", "itm_weight", "itm_term", "itm_anchor"
TERMS = ("positive", "caption", "image", "given", "dataset")  # itm_term codes 0..4


class ITMHead(nn.Module):
    """Outputs ``{"logits": [B]}``: one matching logit per pair (sigmoid = match probability).

    ``fusion="sum"`` is MMnas's head: a linear classifier of LayerNorm(text + regions), so every
    text-image interaction must come from the network's guided attention. ``"sum_bilinear"`` (the
    default) adds a bilinear match score of the two reduced streams, ``t^T W r / sqrt(d)``, with
    ``W`` starting at the identity (a scaled dot product). Measured on the embedded scenes: with
    ``"sum"`` every network trained from scratch collapsed to a constant logit (recall at chance),
    while a plain dot product of pooled streams learned the same pairs; with ``W`` starting at zero
    the 1-layer MCAN escaped the constant solution after ~350 steps in 1 of 3 seeds, starting at the
    identity after 150-200 steps in 3 of 3 (bench/README.md).
    """

    def __init__(self, cfg: ITMHeadConfig, hidden_size: int, layer_norm: str = "torch") -> None:
        super().__init__()
        out_size = cfg.out_size(hidden_size)
        self.fusion = FusedReduction(hidden_size, out_size, cfg.flat_mlp_size, cfg.flat_glimpses, cfg.dropout, layer_norm)
        self.classifier = nn.Linear(out_size, 1)
        self.bilinear = nn.Linear(out_size, out_size, bias=False) if cfg.fusion == "sum_bilinear" else None
        if self.bilinear is not None:
            nn.init.eye_(self.bilinear.weight)
        self.scale = out_size**-0.5

    def forward(self, text: Tensor, text_mask: Tensor, regions: Tensor, region_mask: Tensor) -> dict[str, Tensor]:
        text_vector, region_vector = self.fusion.pooled(text, text_mask, regions, region_mask)
        logits = self.classifier(self.fusion.norm(text_vector + region_vector)).squeeze(-1)
        if self.bilinear is not None:
            logits = logits + self.scale * (self.bilinear(text_vector) * region_vector).sum(-1)
        return {"logits": logits}


def predict_itm(outputs: dict[str, Tensor], batch: MultimodalBatch | None = None) -> dict[str, Tensor]:
    """``score [B]``: the match probability of each pair."""
    return {"score": torch.sigmoid(require_output(outputs, "logits", "itm"))}


def _logits(run: RunFn, batch: MultimodalBatch) -> Tensor:
    logits = require_output(run(batch), "logits", "itm")
    if logits.shape != (batch.batch_size,):
        raise ValueError(f"itm: expected logits [{batch.batch_size}], got {tuple(logits.shape)}")
    return logits


@dataclass
class ITMNegatives:
    """The pairs one training step uses; all row indices refer to the original batch."""

    anchors: Tensor  # [P] rows used as positive pairs
    given: Tensor  # [Q] rows marked match=0 (scored as negatives as they are)
    caption_rows: Tensor  # [P] row whose caption is the negative for the anchor's image
    caption_valid: Tensor  # [P] bool (False: no row with another image in the batch)
    image_rows: Tensor  # [P] row whose image is the negative for the anchor's caption
    image_valid: Tensor  # [P] bool
    dataset_index: Tensor | None = None  # [P] which of the anchor's K dataset negatives
    dataset_valid: Tensor | None = None  # [P] bool (False: the anchor has none)


def dataset_negative_texts(batch: MultimodalBatch) -> MultimodalBatch | None:
    """The dataset hard-negative captions as a text-only batch of ``B * K`` rows (row ``b * K + k``),
    or None when the batch carries none."""
    mask = batch.targets.get(NEG_TEXT_MASK_KEY)
    if mask is None:
        return None
    if mask.dim() != 3 or mask.shape[0] != batch.batch_size or mask.dtype != torch.bool:
        raise ValueError(f"itm: targets[{NEG_TEXT_MASK_KEY!r}] must be bool [B, K, T] with B={batch.batch_size}, got {mask.dtype} {tuple(mask.shape)}")
    fields: dict[str, Tensor] = {"text_mask": mask.flatten(0, 1)}
    for key, name, source in ((NEG_TEXT_IDS_KEY, "text_ids", batch.text_ids), (NEG_TEXT_STATES_KEY, "text_states", batch.text_states)):
        if source is None:
            continue
        value = batch.targets.get(key)
        if value is None:
            raise KeyError(f"itm: the batch has {name} and {NEG_TEXT_MASK_KEY!r}, so it needs targets[{key!r}] as well")
        if value.shape[:3] != mask.shape or value.shape[3:] != source.shape[2:]:
            raise ValueError(f"itm: targets[{key!r}] must be {tuple(mask.shape) + tuple(source.shape[2:])}, got {tuple(value.shape)}")
        fields[name] = value.flatten(0, 1)
    return MultimodalBatch(**fields)


def _sample_candidates(allowed: Tensor, k: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """``k`` distinct random allowed columns per row: ``(index [P, k], valid [P, k])``, valid ones first."""
    noise = torch.rand(allowed.shape, generator=generator, device=allowed.device)
    values, index = noise.masked_fill(~allowed, -1.0).topk(k, dim=1)
    return index, values >= 0


def _pick(candidates: Tensor, column: Tensor) -> Tensor:
    """``candidates[p, column[p]]`` for every row p."""
    return candidates.gather(1, column.unsqueeze(1)).squeeze(1)


def _hardest(logits: Tensor, valid: Tensor) -> Tensor:
    """Column of the highest-scoring valid candidate per row (column 0 if none is valid)."""
    return logits.masked_fill(~valid, float("-inf")).argmax(dim=1)


class ITMObjective:
    """BCE on positives and mined negatives (see the module docstring for the batch contract).

    Per anchor (positive pair) the step uses: a negative caption for its image and a negative
    image for its caption, each re-paired from another row of the batch showing a different
    image (the hardest of ``num_candidates`` random ones scored without grad from epoch
    ``hard_negatives_from_epoch`` on, a random one before), and, when the batch carries them,
    the hardest (or, before that epoch, a random) dataset hard-negative caption. The positive
    term is weighted by the number of negative terms, as MMnas counts it once per negative.
    """

    def __init__(self, cfg: ITMHeadConfig, generator: torch.Generator | None = None) -> None:
        self.cfg = cfg
        self.generator = generator  # None: the global torch RNG (checkpointed by the recipes)

    def split_rows(self, batch: MultimodalBatch) -> tuple[Tensor, Tensor]:
        """``(anchors, given_negatives)``: rows with match != 0, rows with match == 0."""
        match = batch.targets.get(MATCH_KEY)
        rows = torch.arange(batch.batch_size, device=batch.text_mask.device)
        if match is None:
            return rows, rows[:0]
        if match.shape != (batch.batch_size,):
            raise ValueError(f"itm: targets[{MATCH_KEY!r}] must be [B] = [{batch.batch_size}], got {tuple(match.shape)}")
        positive = match.to(rows.device) > 0.5
        return rows[positive], rows[~positive]

    def _same_image(self, batch: MultimodalBatch, anchors: Tensor) -> Tensor:
        ids = batch.meta.get(IMAGE_ID_META)
        if ids is None:
            return torch.eye(len(anchors), dtype=torch.bool, device=anchors.device)
        if len(ids) != batch.batch_size:
            raise ValueError(f"itm: meta[{IMAGE_ID_META!r}] has {len(ids)} entries for {batch.batch_size} rows")
        group = first_rows_by_key(ids)[1].to(anchors.device)[anchors]
        return group.unsqueeze(0) == group.unsqueeze(1)

    def mine(self, run: RunFn, batch: MultimodalBatch, epoch: int = 0) -> ITMNegatives:
        """Choose the negatives of one step. When mining, ``run`` scores all candidates in one
        forward without grad, in whatever mode (train/eval) the network is in."""
        anchors, given = self.split_rows(batch)
        count = len(anchors)
        allowed = ~self._same_image(batch, anchors)
        k = max(1, min(self.cfg.num_candidates, count))
        caption_cand, caption_ok = _sample_candidates(allowed, k, self.generator)
        image_cand, image_ok = _sample_candidates(allowed, k, self.generator)
        negative_texts = dataset_negative_texts(batch) if self.cfg.use_dataset_negatives else None
        if negative_texts is not None:
            present = ~batch.targets[NEG_TEXT_MASK_KEY].to(anchors.device).all(dim=-1)[anchors]  # [P, K]
            noise = torch.rand(present.shape, generator=self.generator, device=present.device)
            dataset_choice = noise.masked_fill(~present, -1.0).argmax(dim=1)
        hard = epoch >= self.cfg.hard_negatives_from_epoch and count > 0
        caption_col = image_col = torch.zeros(count, dtype=torch.long, device=anchors.device)
        if hard and (k > 1 or (negative_texts is not None and present.shape[1] > 1)):
            scores = self._score_candidates(run, batch, anchors, caption_cand, image_cand, negative_texts)
            if k > 1:
                caption_col = _hardest(scores[0], caption_ok)
                image_col = _hardest(scores[1], image_ok)
            if negative_texts is not None and present.shape[1] > 1:
                dataset_choice = _hardest(scores[2], present)
        negatives = ITMNegatives(
            anchors=anchors,
            given=given,
            caption_rows=anchors[_pick(caption_cand, caption_col)],
            caption_valid=caption_ok[:, 0],
            image_rows=anchors[_pick(image_cand, image_col)],
            image_valid=image_ok[:, 0],
        )
        if negative_texts is not None:
            negatives.dataset_index = dataset_choice
            negatives.dataset_valid = present.any(dim=1)
        return negatives

    @torch.no_grad()
    def _score_candidates(
        self,
        run: RunFn,
        batch: MultimodalBatch,
        anchors: Tensor,
        caption_cand: Tensor,
        image_cand: Tensor,
        negative_texts: MultimodalBatch | None,
    ) -> list[Tensor]:
        """Logits of every candidate pair, one forward: ``[P, k]`` caption candidates, ``[P, k]``
        image candidates and, with dataset negatives, ``[P, K]``."""
        count, k = caption_cand.shape
        own = anchors.unsqueeze(1).expand(count, k).reshape(-1)
        parts = [pair_rows(batch, torch.cat((own, anchors[image_cand].reshape(-1))), batch, torch.cat((anchors[caption_cand].reshape(-1), own)))]
        shapes = [(count, k), (count, k)]
        if negative_texts is not None:
            per_row = batch.targets[NEG_TEXT_MASK_KEY].shape[1]
            image_rows = anchors.unsqueeze(1).expand(count, per_row).reshape(-1)
            text_rows = (anchors.unsqueeze(1) * per_row + torch.arange(per_row, device=anchors.device)).reshape(-1)
            parts.append(pair_rows(batch, image_rows, negative_texts, text_rows))
            shapes.append((count, per_row))
        pairs = parts[0] if len(parts) == 1 else concat_batches(parts)
        logits = _logits(run, pairs).float()
        return [chunk.reshape(shape) for chunk, shape in zip(logits.split([a * b for a, b in shapes]), shapes)]

    def prepare(self, run: RunFn, batch: MultimodalBatch, epoch: int = 0) -> MultimodalBatch:
        """The batch of every pair this step trains on, for one forward with grad.

        Rows: positives (one per anchor, in anchor order), in-batch caption negatives, in-batch
        image negatives, given negatives (match 0), then dataset caption negatives. Targets:
        ``itm_label`` [R] (1 positive, 0 negative), ``itm_weight`` [R] (the positive counts once
        per negative term; an anchor without a negative of some kind gets weight 0 there),
        ``itm_term`` [R] (:data:`TERMS` index) and ``itm_anchor`` [R] (the anchor a row belongs to).
        """
        negatives = self.mine(run, batch, epoch)
        anchors, given = negatives.anchors, negatives.given
        count, device = len(anchors), anchors.device
        image_rows = torch.cat((anchors, anchors, negatives.image_rows, given))
        text_rows = torch.cat((anchors, negatives.caption_rows, anchors, given))
        parts = [pair_rows(batch, image_rows, batch, text_rows)]
        with_dataset = negatives.dataset_index is not None and count > 0
        if with_dataset:
            per_row = batch.targets[NEG_TEXT_MASK_KEY].shape[1]
            parts.append(pair_rows(batch, anchors, dataset_negative_texts(batch), anchors * per_row + negatives.dataset_index))
        pairs = parts[0] if len(parts) == 1 else concat_batches(parts)

        ones, index = torch.ones(count, device=device), torch.arange(count, device=device)
        no_anchor = torch.full((len(given),), -1, dtype=torch.long, device=device)
        weights = [ones * (3 if with_dataset else 2), negatives.caption_valid.float(), negatives.image_valid.float(), torch.ones(len(given), device=device)]
        terms = [0, 1, 2, 3]
        anchor_of_row = [index, index, index, no_anchor]
        if with_dataset:
            weights.append(negatives.dataset_valid.float())
            terms.append(4)
            anchor_of_row.append(index)
        sizes = [len(w) for w in weights]
        term = torch.repeat_interleave(torch.tensor(terms, device=device), torch.tensor(sizes, device=device))
        pairs.targets = {
            ITM_LABEL_KEY: (term == 0).float(),
            ITM_WEIGHT_KEY: torch.cat(weights),
            ITM_TERM_KEY: term,
            ITM_ANCHOR_KEY: torch.cat(anchor_of_row),
        }
        return pairs

    def loss_from_outputs(self, outputs: dict[str, Tensor], pairs: MultimodalBatch) -> tuple[Tensor, dict[str, float]]:
        """Weighted BCE over a batch made by :meth:`prepare` (reduction "sum", or "mean" per anchor)."""
        missing = [key for key in (ITM_LABEL_KEY, ITM_WEIGHT_KEY, ITM_TERM_KEY, ITM_ANCHOR_KEY) if key not in pairs.targets]
        if missing:
            raise KeyError(f"itm: the batch lacks {missing}; build the training pairs with ITMObjective.prepare(run, batch, epoch) first")
        logits = require_output(outputs, "logits", "itm")
        if logits.shape != (pairs.batch_size,):
            raise ValueError(f"itm: expected logits [{pairs.batch_size}], got {tuple(logits.shape)}")
        label = pairs.targets[ITM_LABEL_KEY].to(logits.dtype)
        weight = pairs.targets[ITM_WEIGHT_KEY].to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, label, weight=weight, reduction="sum")
        term = pairs.targets[ITM_TERM_KEY]
        if self.cfg.reduction == "mean":
            loss = loss / (term == 0).sum().clamp(min=1)
        return loss, to_floats(_pair_logs(loss, logits.detach(), term, pairs.targets[ITM_ANCHOR_KEY], weight))

    def loss(self, run: RunFn, batch: MultimodalBatch, epoch: int = 0) -> tuple[Tensor, dict[str, float]]:
        pairs = self.prepare(run, batch, epoch)
        return self.loss_from_outputs(run(pairs), pairs)


def _pair_logs(loss: Tensor, logits: Tensor, term: Tensor, anchor: Tensor, weight: Tensor) -> dict[str, Tensor]:
    """Loss, mean positive probability, and per negative term the percentage of anchors whose
    positive outscores that negative (``itm_<term>_rank_acc``)."""
    logs = {"loss": loss}
    positive = term == 0
    if not positive.any():
        return logs
    positive_logit = torch.zeros(int(anchor.max()) + 1, dtype=logits.dtype, device=logits.device)
    positive_logit[anchor[positive]] = logits[positive]
    logs["itm_pos_prob"] = torch.sigmoid(logits[positive]).mean()
    for code, name in enumerate(TERMS):
        rows = (term == code) & (weight > 0) & (anchor >= 0)
        if code and rows.any():
            logs[f"itm_{name}_rank_acc"] = 100.0 * (positive_logit[anchor[rows]] > logits[rows]).float().mean()
    return logs


@torch.no_grad()
def score_all_pairs(run: RunFn, images: MultimodalBatch, captions: MultimodalBatch, chunk: int = 256) -> Tensor:
    """Matching logits of every (image, caption) pair: ``[num_images, num_captions]`` on the CPU.

    ``images`` supplies the image side of its rows, ``captions`` the text side of its rows; the
    network runs on ``chunk`` pairs at a time (cost: num_images x num_captions forward rows).
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    num_images, num_captions = images.batch_size, captions.batch_size
    scores = torch.empty(num_images * num_captions)
    for start in range(0, num_images * num_captions, chunk):
        flat = torch.arange(start, min(start + chunk, num_images * num_captions))
        pairs = pair_rows(images, flat // num_captions, captions, flat % num_captions)
        scores[start : start + len(flat)] = _logits(run, pairs).float().cpu()
    return scores.view(num_images, num_captions)


def retrieval_sets(batches: Iterable[MultimodalBatch]) -> tuple[MultimodalBatch, MultimodalBatch, Tensor]:
    """From positive (image, caption) batches with ``meta["image_id"]``: ``(images, captions,
    text_to_image)`` with one row per distinct image (its image side), one per caption (its text
    side only, so an image's features are held once however many captions it has), and the
    index of each caption's image. Rows with ``targets["match"] == 0`` are skipped."""
    image_parts, caption_parts, image_index = [], [], {}
    text_to_image: list[int] = []
    for batch in batches:
        ids = batch.meta.get(IMAGE_ID_META)
        if ids is None:
            raise KeyError(f"itm evaluation needs meta[{IMAGE_ID_META!r}] to know which captions describe which image")
        match = batch.targets.get(MATCH_KEY)
        rows = range(batch.batch_size) if match is None else torch.nonzero(match > 0.5).squeeze(1).tolist()
        new_rows = []
        for row in rows:
            if ids[row] not in image_index:
                image_index[ids[row]] = len(image_index)
                new_rows.append(row)
            text_to_image.append(image_index[ids[row]])
        text_side = MultimodalBatch(**{name: getattr(batch, name) for name in TEXT_FIELDS})
        caption_parts.append(text_side.select(torch.tensor(list(rows), dtype=torch.long)))
        if new_rows:
            image_parts.append(batch.select(torch.tensor(new_rows, dtype=torch.long)))
    if not image_parts:
        raise ValueError("itm evaluation got no positive (image, caption) pairs")
    images = concat_batches(MultimodalBatch(text_mask=b.text_mask, **{n: getattr(b, n) for n in IMAGE_FIELDS}) for b in image_parts)
    return images, concat_batches(caption_parts), torch.tensor(text_to_image, dtype=torch.long)


def evaluate_itm(cfg: ITMHeadConfig, run: RunFn, batches: Iterable[MultimodalBatch]) -> dict[str, float]:
    """Retrieval over all (image, caption) pairs of the given batches: ``retrieval_recall``'s
    keys prefixed ``itm_`` (``itm_i2t_r1`` ... ``itm_t2i_r10``, means, ``itm_rsum``; percent),
    plus ``itm_images`` and ``itm_captions`` (the set sizes)."""
    images, captions, text_to_image = retrieval_sets(batches)
    similarity = score_all_pairs(run, images, captions, cfg.eval_chunk)
    out = {f"itm_{key}": float(value) for key, value in retrieval_recall(similarity, text_to_image, ks=cfg.recall_ks).items()}
    out.update(itm_images=float(images.batch_size), itm_captions=float(captions.batch_size))
    return out


__all__ = [
    "IMAGE_ID_META",
    "ITM_ANCHOR_KEY",
    "ITM_LABEL_KEY",
    "ITM_TERM_KEY",
    "ITM_WEIGHT_KEY",
    "ITMHead",
    "ITMNegatives",
    "ITMObjective",
    "MATCH_KEY",
    "NEG_TEXT_IDS_KEY",
    "NEG_TEXT_MASK_KEY",
    "NEG_TEXT_STATES_KEY",
    "TERMS",
    "dataset_negative_texts",
    "evaluate_itm",
    "predict_itm",
    "retrieval_sets",
    "score_all_pairs",
]
