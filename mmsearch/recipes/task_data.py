"""The data contract of the MMnas recipes (supernet search and derived-network training).

A ``TaskData`` serves ``MultimodalBatch``es of one task (vqa, itm or vg) from named parts:

  * ``"weights"`` and ``"arch"``: two disjoint parts of the training split (split by image, so
    no image feeds both), used for the network-weight and the architecture-weight steps;
  * ``"train"``: the whole training split (derived-network training);
  * ``"val"`` and ``"test"``: evaluation splits (model selection uses ``val`` only).

Implementations: ``mmsearch.data.tasks`` (latent stores written by the precompute job, for the
embedded scenes and the real-format loaders) and small synthetic ones in tests. Batches are
padded to their own longest sequence (dynamic padding), never to a global maximum.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Literal, Protocol, runtime_checkable

import numpy as np

from mmsearch.batch import MultimodalBatch

Part = Literal["weights", "arch", "train", "val", "test"]
Task = Literal["vqa", "itm", "vg"]


@dataclass(frozen=True)
class TaskInfo:
    """What a model needs to know about the data to be built for it."""

    task: Task
    region_dim: int  # region feature width (EfficientNet-Lite0: 1280; bottom-up attention: 2048)
    vocab_size: int = 0  # learned-embedding vocabulary incl. PAD=0 / UNK=1 (0: no token ids)
    text_state_dim: int = 0  # frozen per-token states width (MiniLM: 384; 0: none)
    num_answers: int = 0  # VQA answer vocabulary size
    answers: tuple[str, ...] = ()  # VQA answer strings by index
    max_regions: int = 0  # largest region count in the data
    max_tokens: int = 0  # largest token count in the data
    # Optional pretrained rows for the learned token embedding, [vocab_size, dim] float32.
    embedding_init: np.ndarray | None = field(default=None, compare=False, repr=False)


@runtime_checkable
class TaskData(Protocol):
    info: TaskInfo

    def num_samples(self, part: Part) -> int:
        """Number of samples (questions / captions / expressions) in ``part``."""

    def batches(
        self,
        part: Part,
        *,
        batch_size: int,
        epoch: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> Iterator[MultimodalBatch]:
        """Batches of ``part``; with ``shuffle`` the order is a pure function of (seed, epoch)."""
