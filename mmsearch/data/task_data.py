"""The data contract of the MMnas recipes (supernet search and derived-network training).

A ``TaskData`` serves ``MultimodalBatch``es of one task (e.g. vqa, itm or vg) from named parts:

  * ``"weights"`` and ``"arch"``: two disjoint parts of the training split (split by image, so
    no image feeds both), used for the network-weight and the architecture-weight steps;
  * ``"train"``: the whole training split (derived-network training);
  * ``"val"`` and ``"test"``: evaluation splits (model selection uses ``val`` only).

Implementations: ``mmsearch.data.tasks`` (latent stores written by the precompute job, for the
embedded scenes and the real-format loaders), ``mmsearch.data.synthetic`` (generated scenes) and
whatever a task's entry in ``mmsearch.tasks`` opens. Batches are
padded to their own longest sequence (dynamic padding), never to a global maximum.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Literal, Protocol, runtime_checkable

import numpy as np

from mmsearch.batch import MultimodalBatch

Part = Literal["weights", "arch", "train", "val", "test"]
Task = str  # a task name registered in mmsearch.tasks.TASKS (the recipe configs check it)


@dataclass(frozen=True)
class TaskInfo:
    """What a model needs to know about the data to be built for it."""

    task: Task
    region_dim: int  # region feature width (EfficientNet-Lite0: 1280; bottom-up attention: 2048)
    vocab_size: int = 0  # learned-embedding vocabulary incl. PAD=0 / UNK=1 (0: no token ids)
    text_state_dim: int = 0  # frozen per-token states width (MiniLM: 384; 0: none)
    num_answers: int = 0  # answer vocabulary size (VQA)
    answers: tuple[str, ...] = ()  # answer strings by index (VQA)
    max_regions: int = 0  # largest region count in the data
    max_tokens: int = 0  # largest token count in the data
    # Optional targets the data provides beyond the task's own (VQA: "referent_boxes", what a head's
    # grounding term needs), so a config that needs one is refused before training starts.
    optional_targets: tuple[str, ...] = ()
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

    def collate_rows(self, part: Part, positions: np.ndarray) -> MultimodalBatch:
        """The batch of the samples at ``positions`` (0-based within ``part``), collated exactly as
        ``batches`` collates them (used by data-parallel workers that receive positions)."""



def shuffled_order(count: int, order_seed: object, block: int = 1) -> np.ndarray:
    """A permutation of ``range(count)`` drawn from ``np.random.default_rng(order_seed)``. With
    ``block`` > 1 the positions are shuffled in runs of ``block`` consecutive ones (the last run
    shorter), each run kept whole and in order: a batch then takes its samples from a few places
    of the store rather than one row group per sample (``data.shuffle_block``). ``block`` 1 is the
    plain permutation."""
    rng = np.random.default_rng(order_seed)
    if block <= 1:
        return rng.permutation(count)
    starts = np.arange(0, count, block)[rng.permutation(-(-count // block))]
    order = (starts[:, None] + np.arange(block)).ravel()
    return order[order < count]  # the last run's missing tail


def row_batches(rows: np.ndarray, batch_size: int, order_seed: object, drop_last: bool, block: int = 1) -> Iterator[np.ndarray]:
    """``rows`` cut into slices of ``batch_size`` in order (the last one shorter, or dropped with
    ``drop_last``), after :func:`shuffled_order` (runs of ``block``) unless ``order_seed`` is None:
    how an in-memory :class:`TaskData` orders and cuts a part's samples."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if order_seed is not None:
        rows = rows[shuffled_order(len(rows), order_seed, block)]
    stop = len(rows) - len(rows) % batch_size if drop_last else len(rows)
    for start in range(0, stop, batch_size):
        yield rows[start : start + batch_size]

# --- where a recipe gets its TaskData from -------------------------------------------------
from pydantic import Field  # noqa: E402

from mmsearch.config import config_dataclass  # noqa: E402


@config_dataclass
class TaskDataConfig:
    """Which precomputed data set a recipe reads, and how the training split is divided."""

    root: str = ""  # data set root written by the precompute job (local path or s3://...)
    task: Task = "vqa"  # a registered task (mmsearch.tasks.TASKS); its entry says which tables it reads
    text_input: Literal["tokens", "states"] = "tokens"  # learned embeddings or frozen MiniLM states
    arch_fraction: float = 0.2  # share of training *images* whose samples feed the architecture step
    split_seed: int = 0  # seed of the weights/arch division (fixed per data set, not per trial)
    limit: dict[str, int] = Field(default_factory=dict)  # optional cap of samples per part, e.g. {"weights": 2000}
    # Region features (and with text_input "states" the per-token states): "memory" loads a
    # split's tables on first use; "stream" reads the rows each batch needs from the store's
    # Parquet row groups (same batches, bounded memory).
    regions: Literal["memory", "stream"] = "memory"
    region_cache_mib: int = 256  # stream: MiB of decoded row groups the streamed tables keep for reuse, all splits together (least recently used dropped; 0: none)
    # stream, in a Tune trial or Ray Train worker: the training split's streamed tables are read
    # through Ray Data from this many MiB stored; below it the process reads them itself (a
    # process's Ray Data start, 2-3 s on 2 cores, 15 s with four trials starting at once, is not
    # worth it for a few MiB; 0: always Ray Data).
    ray_data_min_mib: int = 64
    # Shuffling keeps runs of this many consecutive samples (storage order) together: with
    # ``regions: stream`` a batch then reads a few row groups of the sample table instead of one
    # per sample (set it to the samples per row group of that table, say 16 for 128 KiB of
    # MiniLM states). 1: every sample shuffled alone (the default; batches as before).
    shuffle_block: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.arch_fraction < 1.0:
            raise ValueError(f"data.arch_fraction must be in (0, 1), got {self.arch_fraction}")
        unknown = set(self.limit) - {"weights", "arch", "train", "val", "test"}
        if unknown:
            raise ValueError(f"data.limit has unknown parts {sorted(unknown)}")
        if self.region_cache_mib < 0:
            raise ValueError(f"data.region_cache_mib must be >= 0 (MiB), got {self.region_cache_mib}")
        if self.shuffle_block < 1:
            raise ValueError(f"data.shuffle_block must be >= 1 (samples), got {self.shuffle_block}")
        if self.ray_data_min_mib < 0:
            raise ValueError(f"data.ray_data_min_mib must be >= 0 (MiB), got {self.ray_data_min_mib}")
        bad = {k: v for k, v in self.limit.items() if v < 1}
        if bad:
            raise ValueError(f"data.limit values must be >= 1, got {bad}")
