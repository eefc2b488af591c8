"""A toy task added through the task registry alone (``tests/test_toy_task.py`` uses it).

``toy``: is the mean of the first feature of an image's regions positive? Head: masked means of
both streams, one linear unit; loss: binary cross-entropy; metric ``toy_acc`` (%, higher is
better); results file ``<split>_toy_labels.json`` with one row per sample. Its data is generated
here (``data.root: synthetic``), with the parts and the batch order the ``TaskData`` contract asks.
Importing this module registers the task; nothing else in the project changes.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.config import config_dataclass
from mmsearch.data.task_data import TaskDataConfig, TaskInfo
from mmsearch.heads import HeadEntry
from mmsearch.tasks import Labels, ResultFile, TaskEntry, register_task

NAME = "toy"
REGION_DIM, VOCAB, MAX_REGIONS, MAX_TOKENS = 8, 6, 5, 4
PART_SIZES = {"weights": 48, "arch": 16, "val": 24, "test": 16}


@config_dataclass
class ToyHeadConfig:
    task: Literal["toy"] = "toy"
    hidden_scale: float = Field(default=1.0, gt=0.0)  # multiplies the pooled streams (a field to validate)


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    keep = (~mask).unsqueeze(-1).to(x.dtype)
    return (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)


class ToyHead(nn.Module):
    def __init__(self, cfg: ToyHeadConfig, hidden_size: int) -> None:
        super().__init__()
        self.scale = cfg.hidden_scale
        self.out = nn.Linear(2 * hidden_size, 1)

    def forward(self, text: Tensor, text_mask: Tensor, regions: Tensor, region_mask: Tensor) -> dict[str, Tensor]:
        pooled = torch.cat([_masked_mean(text, text_mask), _masked_mean(regions, region_mask)], dim=-1)
        return {"logits": self.out(self.scale * pooled).squeeze(-1)}


class ToyObjective:
    def __init__(self, cfg: ToyHeadConfig) -> None:
        self.cfg = cfg

    def prepare(self, run: Any, batch: MultimodalBatch, epoch: int = 0) -> MultimodalBatch:
        return batch

    def loss_from_outputs(self, outputs: dict[str, Tensor], batch: MultimodalBatch) -> tuple[Tensor, dict[str, float]]:
        loss = F.binary_cross_entropy_with_logits(outputs["logits"].float(), batch.targets["label"])
        return loss, {"loss": float(loss.detach())}

    def loss(self, run: Any, batch: MultimodalBatch, epoch: int = 0) -> tuple[Tensor, dict[str, float]]:
        return self.loss_from_outputs(run(batch), batch)


@torch.no_grad()
def evaluate_toy(cfg: ToyHeadConfig, run: Any, batches: Iterable[MultimodalBatch]) -> dict[str, float]:
    right = total = 0
    for batch in batches:
        predicted = run(batch)["logits"] > 0
        right += int((predicted == batch.targets["label"].bool()).sum())
        total += batch.batch_size
    return {"toy_acc": 100.0 * right / max(total, 1), "toy_samples": float(total)}


def predict_toy(cfg: ToyHeadConfig, outputs: dict[str, Tensor], batch: MultimodalBatch) -> dict[str, Tensor]:
    return {"label": (outputs["logits"] > 0).long()}


def label_rows(predicted: dict[str, Tensor], ids: list[Any], info: TaskInfo) -> list[dict[str, Any]]:
    return [{"sample_id": i, "label": label} for i, label in zip(ids, predicted["label"].tolist())]


class ToyData:
    """Generated ``TaskData`` of the toy task: a pure function of the data config's ``split_seed``."""

    def __init__(self, cfg: TaskDataConfig) -> None:
        self.info = TaskInfo(task=NAME, region_dim=REGION_DIM, vocab_size=VOCAB, max_regions=MAX_REGIONS,
                             max_tokens=MAX_TOKENS)
        self._parts = {part: self._generate(index, cfg.split_seed, cfg.limit.get(part, n))
                       for index, (part, n) in enumerate(PART_SIZES.items())}
        weights, arch = self._parts["weights"], self._parts["arch"]
        self._parts["train"] = {key: np.concatenate([weights[key], arch[key]]) for key in weights}

    @staticmethod
    def _generate(index: int, seed: int, n: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([seed, index])
        regions = rng.integers(2, MAX_REGIONS + 1, size=n)
        tokens = rng.integers(1, MAX_TOKENS + 1, size=n)
        feats = rng.standard_normal((n, MAX_REGIONS, REGION_DIM)).astype(np.float32)
        present = np.arange(MAX_REGIONS)[None, :] < regions[:, None]
        label = ((feats[..., 0] * present).sum(1) / regions > 0).astype(np.float32)
        corner = rng.uniform(0, 40, size=(n, MAX_REGIONS, 2)).astype(np.float32)
        boxes = np.concatenate([corner, corner + 8.0], axis=-1)
        ids = rng.integers(2, VOCAB, size=(n, MAX_TOKENS))
        return {"regions": regions, "tokens": tokens, "feats": feats, "boxes": boxes, "ids": ids, "label": label,
                "row": np.arange(n)}

    def num_samples(self, part: str) -> int:
        return len(self._parts[part]["label"])

    def batches(self, part: str, *, batch_size: int, epoch: int = 0, seed: int = 0, shuffle: bool = True,
                drop_last: bool = False) -> Iterator[MultimodalBatch]:
        order = np.arange(self.num_samples(part))
        if shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(order)
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            yield self.collate_rows(part, order[start:start + batch_size])

    def collate_rows(self, part: str, positions: np.ndarray) -> MultimodalBatch:
        data = {key: value[np.asarray(positions, dtype=np.int64)] for key, value in self._parts[part].items()}
        n, t = int(data["regions"].max()), int(data["tokens"].max())
        text_mask = torch.arange(t)[None, :] >= torch.from_numpy(data["tokens"])[:, None]
        return MultimodalBatch(
            text_mask=text_mask,
            text_ids=torch.from_numpy(data["ids"][:, :t]).masked_fill(text_mask, 0),
            region_feats=torch.from_numpy(data["feats"][:, :n]),
            region_boxes=torch.from_numpy(data["boxes"][:, :n]),
            region_mask=torch.arange(n)[None, :] >= torch.from_numpy(data["regions"])[:, None],
            image_size=torch.tensor([[48.0, 48.0]]).expand(len(positions), 2).contiguous(),
            targets={"label": torch.from_numpy(data["label"])},
            meta={"sample_id": [f"{part}/{r}" for r in data["row"].tolist()]},
        )


def _no_data_set(cfg: TaskDataConfig, **kwargs: Any) -> Any:
    raise ValueError("the toy task has generated data only (data.root: synthetic)")


TOY = register_task(TaskEntry(
    name=NAME,
    head=HeadEntry(ToyHeadConfig, ToyHead, ToyObjective, evaluate_toy, predict_toy),
    primary_metric="toy_acc",
    labels=Labels(metric="toy accuracy", unit="%", meaning="toy accuracy in %, toy_acc"),
    results=ResultFile("{split}_toy_labels.json", label_rows, id_keys=("sample_id",)),
    open_data=_no_data_set,
    synthetic_data=lambda cfg, **sizes: ToyData(cfg),
    smoke_val_samples=24,
))
