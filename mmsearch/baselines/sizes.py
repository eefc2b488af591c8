"""What a baseline needs to know about the data to be built, and the widths it is built with."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mmsearch.config import config_dataclass

# The tasks the baselines have outputs for (their models branch on these; the registry of all
# tasks is mmsearch.tasks.TASKS: a new task has no baselines until they learn its outputs).
Task = Literal["vqa", "itm", "vg"]
BASELINE_TASKS: tuple[str, ...] = ("vqa", "itm", "vg")


@dataclass(frozen=True)
class DataSizes:
    """The data-dependent sizes of a model (the fields of ``mmsearch.data.task_data.TaskInfo``
    a baseline reads; :meth:`from_info` copies them from any object that has them)."""

    task: Task
    region_dim: int  # region feature width (EfficientNet-Lite0: 1280)
    vocab_size: int  # token vocabulary incl. PAD=0 / UNK=1
    num_answers: int = 0  # VQA answer vocabulary (vqa only)
    max_regions: int = 0  # most regions of any image (the text-only VG model scores region slots)
    embedding_init: np.ndarray | None = field(default=None, compare=False, repr=False)  # [vocab, word_dim]

    def __post_init__(self) -> None:
        if self.task not in BASELINE_TASKS:
            raise ValueError(f"unknown task {self.task!r} for the baselines; they are built for {', '.join(BASELINE_TASKS)}")
        if self.region_dim <= 0 or self.vocab_size <= 0:
            raise ValueError(f"region_dim and vocab_size must be positive, got {self.region_dim} and {self.vocab_size}")
        if self.task == "vqa" and self.num_answers <= 0:
            raise ValueError("vqa needs num_answers > 0 (the answer vocabulary is empty)")
        if self.task == "vg" and self.max_regions <= 0:
            raise ValueError("vg needs max_regions > 0")
        if self.embedding_init is not None and (self.embedding_init.ndim != 2 or self.embedding_init.shape[0] != self.vocab_size):
            raise ValueError(f"embedding_init must be [vocab_size={self.vocab_size}, word_dim], got {self.embedding_init.shape}")

    @classmethod
    def from_info(cls, info: Any) -> "DataSizes":
        return cls(
            task=info.task,
            region_dim=int(info.region_dim),
            vocab_size=int(info.vocab_size),
            num_answers=int(info.num_answers),
            max_regions=int(info.max_regions),
            embedding_init=info.embedding_init,
        )

    @property
    def word_dim(self) -> int:
        """Token embedding width: the pretrained rows' width, else 300 (GloVe's, as MMnas)."""
        return 300 if self.embedding_init is None else int(self.embedding_init.shape[1])


@config_dataclass
class Widths:
    """Model widths shared by every baseline, so that they differ in what they see, not in size."""

    hidden: int = Field(default=128, gt=0)  # H: stream width
    flat_mlp: int = Field(default=256, gt=0)  # attentional-pooling scoring MLP width (MMnas: 512)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    head_dim: int = Field(default=32, gt=0)  # fused model: attention head width (heads = H / head_dim)
    depth: int = Field(default=2, gt=0)  # fused model: MCAN layers (encoder SA+FFN, decoder SA+GA+FFN each)

    def __post_init__(self) -> None:
        if self.hidden % self.head_dim:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of head_dim ({self.head_dim})")
