"""Paired comparisons over seeds, and the linear probe that measures a frozen encoder's quality.

* :func:`paired_difference`: ``b - a`` per seed present on both sides (the same seed fixes the data
  subset, initialisation and mixing draws of both runs), its mean, std, a two-sided Student-t 95 %
  confidence interval and how many seeds ``b`` won: the difference is significant at 5 % when the
  interval excludes 0.
* :func:`scene_attribute_labels` and :func:`linear_probe_accuracy`: an encoder's own quality on the
  embedded scenes, as the accuracy of a logistic-regression probe on its latents that predicts which
  colours and shapes a scene holds (one binary label per colour and per shape), trained on the train
  split and scored on test, next to the majority-class accuracy of the same labels.
"""
from __future__ import annotations

import math
import statistics
from typing import Mapping, Sequence

import torch
from torch import Tensor


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95) -> dict[str, object]:
    """``b - a`` over the seeds both sides ran: mean, std, n, CI (Student t), wins of b, significance."""
    from scipy.stats import t as student_t

    seeds = sorted(set(a) & set(b))
    deltas = [b[s] - a[s] for s in seeds]
    n = len(deltas)
    mean = statistics.fmean(deltas) if deltas else float("nan")
    std = statistics.stdev(deltas) if n > 1 else float("nan")
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n) if n > 1 else float("nan")
    low, high = mean - half, mean + half
    return {"mean": mean, "std": std, "n": n, "seeds": seeds, "ci": [low, high], "confidence": confidence,
            "wins": sum(d > 0 for d in deltas), "significant": n > 1 and (low > 0 or high < 0)}


def scene_attribute_labels(image_ids: Sequence[str], scenes_cfg) -> tuple[Tensor, list[str]]:
    """float [n, colours + shapes] 0/1: which colours and shapes each scene (by image id) holds."""
    from mmsearch.data.scenes import COLOUR_NAMES, SHAPES, sample_scene
    from mmsearch.data.scenes.world import index_of

    names = [f"colour={c}" for c in COLOUR_NAMES] + [f"shape={s}" for s in SHAPES]
    labels = torch.zeros((len(image_ids), len(names)))
    cache: dict[str, Tensor] = {}
    for row, image_id in enumerate(image_ids):
        if image_id not in cache:
            scene = sample_scene(scenes_cfg, index_of(image_id))
            present = {f"colour={o.colour}" for o in scene.objects} | {f"shape={o.shape}" for o in scene.objects}
            cache[image_id] = torch.tensor([name in present for name in names], dtype=torch.float32)
        labels[row] = cache[image_id]
    return labels, names


def linear_probe_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *, steps: int = 100,
                          weight_decay: float = 1e-3, seed: int = 0) -> dict[str, float]:
    """Mean per-label test accuracy of a multi-label logistic regression on standardised latents."""
    train_x, test_x = train_x.float(), test_x.float()
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(xs.shape[1], train_y.shape[1], generator=generator) * 0.01).requires_grad_()
    bias = torch.zeros(train_y.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, tolerance_grad=1e-5, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ weight + bias, train_y)
        loss = loss + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (xt @ weight + bias) > 0
    majority = (train_y.mean(0) > 0.5).expand_as(test_y)
    return {"accuracy": float((predicted == test_y.bool()).float().mean()),
            "majority_accuracy": float((majority == test_y.bool()).float().mean()),
            "labels": int(train_y.shape[1]), "train_rows": int(len(train_x)), "test_rows": int(len(test_x))}


__all__ = ["linear_probe_accuracy", "paired_difference", "scene_attribute_labels"]
