"""Config of the precompute job: which data, which frozen encoders, which tables, how to run.

The defaults are the default embedded data set (``configs/data/scenes.yaml`` spells them out):
EfficientNet-Lite0 region features from 64-pixel crops, MiniLM token ids and caption latents,
float16 latents. :func:`fingerprint` hashes everything that determines the *data* (not where it
goes or how it is computed), which names cache roots and makes re-runs idempotent.
"""
from __future__ import annotations

import hashlib
import json
from typing import Literal, Optional

from pydantic import field_validator

from mmsearch.config import config_dataclass, config_to_dict
from mmsearch.data.loaders.source import RealDataSource
from mmsearch.data.scenes import SceneConfig

TABLES: tuple[str, ...] = ("regions", "images", "vqa", "captions", "negatives", "refs", "pairs")
SPLITS: tuple[str, ...] = ("train", "val", "test")
# Size of the default embedded data set (19.5k regions, 42.6k texts, 7.5k of them through MiniLM).
# Measured with the Ray backend on the shared 2-core machine: 176 s at load average 10-25; the
# stage rates seen at load ~4 (about 570 crops/s at 48 px) put it near 1.5 minutes when quiet.
DEFAULT_NUM_SCENES = 1500


@config_dataclass
class SourceConfig:
    """Where records come from: the embedded scenes (default) or one real data set on disk."""

    scenes: SceneConfig = SceneConfig(num_scenes=DEFAULT_NUM_SCENES)  # embedded scenes (unused when real is set)
    real: Optional[RealDataSource] = None  # VQA-v2 / Flickr30K / COCO / RefCOCO(+/g) files on disk
    splits: tuple[str, ...] = SPLITS  # which splits to precompute ("train" is required)

    @field_validator("scenes", mode="before")
    @classmethod
    def _default_size(cls, value: object) -> object:
        # A partial scenes section (say only a seed) keeps this data set's default size, not
        # the generator's own default.
        if isinstance(value, dict) and "num_scenes" not in value:
            return {**value, "num_scenes": DEFAULT_NUM_SCENES}
        return value

    def __post_init__(self) -> None:
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown or len(set(self.splits)) != len(self.splits):
            raise ValueError(f"source.splits must be distinct names from {SPLITS}, got {list(self.splits)}")
        if "train" not in self.splits:
            raise ValueError("source.splits must include 'train' (the vocabularies are built on it)")

    @property
    def name(self) -> str:
        return self.real.dataset if self.real is not None else self.scenes.name


@config_dataclass
class ImageEncoderConfig:
    """Region features and whole-image latents from a frozen image encoder (``ENCODERS``)."""

    name: str = "efficientnet_lite0"
    crop_size: int = 48  # region crops are resized to this many pixels (measured best features/s: precompute.benchmark)
    crop_context: float = 0.0  # margin added around each box, as a fraction of its size
    image_size: Optional[int] = None  # whole-image latent input (pixels); None: 224, or the scenes' own size
    grid: int = 3  # raw images without proposals: the whole image plus grid x grid cells are the regions
    batch_size: int = 128  # crops (or images) per encoder forward

    def __post_init__(self) -> None:
        if self.crop_size < 32 or (self.image_size is not None and self.image_size < 32):
            raise ValueError(f"image.crop_size and image.image_size must be >= 32 pixels, got {self.crop_size}, {self.image_size}")
        if not 0.0 <= self.crop_context <= 1.0:
            raise ValueError(f"image.crop_context must be in [0, 1], got {self.crop_context}")
        if self.grid < 1 or self.batch_size < 1:
            raise ValueError("image.grid and image.batch_size must be >= 1")


@config_dataclass
class TextEncoderConfig:
    """Token ids (always), caption sentence latents (always) and optional per-token states."""

    name: str = "minilm"
    states: bool = False  # store MiniLM per-token states of every text (needed for text_input=states)
    max_tokens: int = 32  # WordPiece pieces kept per text (ids and states are cut alike)
    batch_size: int = 128  # texts per encoder forward

    def __post_init__(self) -> None:
        if not 1 <= self.max_tokens <= 510:
            raise ValueError(f"text.max_tokens must be in 1..510, got {self.max_tokens}")
        if self.batch_size < 1:
            raise ValueError("text.batch_size must be >= 1")


@config_dataclass
class VocabConfig:
    """Vocabularies built on the train split only."""

    min_count: int = 1  # WordPiece pieces seen fewer times become UNK
    answer_min_count: int = 1  # answers that are the top answer of fewer train questions are dropped
    max_answers: Optional[int] = None  # keep at most this many answers (most frequent first)

    def __post_init__(self) -> None:
        if self.min_count < 1 or self.answer_min_count < 1:
            raise ValueError("vocab.min_count and vocab.answer_min_count must be >= 1")
        if self.max_answers is not None and self.max_answers < 1:
            raise ValueError("vocab.max_answers must be >= 1 or null")


@config_dataclass
class RayPrecomputeConfig:
    """Ray Data batch inference: actor pools of frozen encoders."""

    image_actors: Optional[int] = None  # None: one per cpus_per_actor CPUs (or per GPU) of the cluster
    text_actors: Optional[int] = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: Optional[float] = None  # None: 1 when the cluster has GPUs, else 0
    image_batch: int = 32  # images per map_batches call
    text_batch: int = 512  # texts per map_batches call

    def __post_init__(self) -> None:
        for key in ("image_actors", "text_actors"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"ray.{key} must be >= 1 or null")
        if self.cpus_per_actor <= 0 or (self.gpus_per_actor is not None and self.gpus_per_actor < 0):
            raise ValueError("ray.cpus_per_actor must be > 0 and ray.gpus_per_actor >= 0")
        if self.image_batch < 1 or self.text_batch < 1:
            raise ValueError("ray.image_batch and ray.text_batch must be >= 1")


@config_dataclass
class StoreLayoutConfig:
    """How the stores' Parquet files are cut (not what they hold: not part of the fingerprint).

    A row group is decoded whole for any of its rows. The default (8 MiB, about 90 images of
    36 x 1280 float16 regions) suits sequential reads (FuseMix, precompute, ``data.regions:
    memory``); a search that streams its regions (``data.regions: stream``) reads questions in a
    random order and decodes about 10x the bytes it uses with it, and about 1x with one image per
    row group (128 KiB for those regions; bench/README.md, "Search-trial data streamed")."""

    row_group_kib: int = 8192  # target row-group size, KiB (a row group holds at least one row)
    row_groups_per_shard: int = 8  # row groups per Parquet file

    def __post_init__(self) -> None:
        if self.row_group_kib < 1 or self.row_groups_per_shard < 1:
            raise ValueError("layout.row_group_kib and layout.row_groups_per_shard must be >= 1")


@config_dataclass
class PrecomputeConfig:
    source: SourceConfig = SourceConfig()
    output: str = ""  # data set root (local path or s3://...); "" = the cache root (see dataset_root)
    tables: Optional[tuple[str, ...]] = None  # None: every table the source has records for
    image: ImageEncoderConfig = ImageEncoderConfig()
    text: TextEncoderConfig = TextEncoderConfig()
    vocab: VocabConfig = VocabConfig()
    dtype: Literal["float16", "float32"] = "float16"  # latents in the stores (compute is fp32 on CPU)
    backend: Literal["local", "ray"] = "ray"  # Ray Data actor pools, or the same functions in this process
    ray: RayPrecomputeConfig = RayPrecomputeConfig()
    local_batch: int = 64  # images (texts: 8x as many) per stage call on the local backend
    layout: StoreLayoutConfig = StoreLayoutConfig()  # row groups and files of the stores written

    def __post_init__(self) -> None:
        if self.tables is not None:
            unknown = [t for t in self.tables if t not in TABLES]
            if unknown or not self.tables:
                raise ValueError(f"tables must be a non-empty list of {TABLES}, got {list(self.tables)}")
        if self.local_batch < 1:
            raise ValueError("local_batch must be >= 1")

    @property
    def name(self) -> str:
        return self.source.name


# Sections that only say where the data goes or how it is computed: not part of the fingerprint.
_EXECUTION_KEYS = ("output", "backend", "ray", "local_batch", "layout")
_EXECUTION_SUBKEYS = {"image": ("batch_size",), "text": ("batch_size",)}


def data_config(cfg: PrecomputeConfig) -> dict:
    """The part of ``cfg`` that determines the data, as a plain dict (defaults resolved)."""
    data = config_to_dict(cfg)
    for key in _EXECUTION_KEYS:
        data.pop(key)
    for section, keys in _EXECUTION_SUBKEYS.items():
        for key in keys:
            data[section].pop(key)
    if cfg.source.real is not None:
        data["source"]["scenes"] = None  # ignored for real data
    return data


# What the code writes from a config; raised when the same config starts producing other data
# (2: the vqa table's referent_boxes; 3: image features no longer depend on how the rows were
# batched, the encoder pads every chunk), so a cached data set of older code is not reused.
CONTENTS_REVISION = 3


def fingerprint(cfg: PrecomputeConfig) -> str:
    """12 hex digits identifying the data ``cfg`` produces (same data -> same fingerprint)."""
    data = {**data_config(cfg), "contents_revision": CONTENTS_REVISION}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def storage_key(cfg: PrecomputeConfig) -> str:
    """The fingerprint, plus the store layout when it is not the default: the name of the data
    set's directory in a cache, so a job asking for another layout (one image per row group, to
    stream regions) builds it rather than reusing the same data cut for sequential reads."""
    layout = cfg.layout
    if layout == StoreLayoutConfig():
        return fingerprint(cfg)
    return f"{fingerprint(cfg)}-rg{layout.row_group_kib}k{layout.row_groups_per_shard}"


__all__ = [
    "CONTENTS_REVISION",
    "ImageEncoderConfig",
    "PrecomputeConfig",
    "RayPrecomputeConfig",
    "SPLITS",
    "SourceConfig",
    "TABLES",
    "TextEncoderConfig",
    "VocabConfig",
    "data_config",
    "fingerprint",
    "storage_key",
]
