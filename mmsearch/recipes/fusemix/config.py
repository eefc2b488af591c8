"""Config of the FuseMix training recipe (``mmsearch.recipes.fusemix.train_fusemix``).

Sections: ``data`` (where the paired latents are and what the columns are called), ``model`` (the
two adapters), ``loss`` (temperature, mixup, MIL-NCE, logit chunking), ``optim`` (AdamW and the
warm-up + cosine schedule), ``train`` (batch size, epochs, seed, device) and ``eval`` (recall
cut-offs and the validation metric that selects the model). Defaults are the reference recipe's
hyper-parameters; ``configs/fusemix/*.yaml`` hold ready-made configs.
"""
from __future__ import annotations

from typing import Literal, Union

from mmsearch.adapters.mixup import MixupMode
from mmsearch.adapters.model import FuseMixModelConfig
from mmsearch.config import config_dataclass

SPLITS: tuple[str, ...] = ("train", "val", "test")


@config_dataclass
class FuseMixDataConfig:
    """Paired latents: one row per (x, y) pair, e.g. (image latent, caption latent, image id)."""

    store: str = ""  # URI of the training split's latent store (local path or s3://bucket/prefix)
    val_store: str = ""  # URI of the validation split's store: selects the model
    test_store: str = ""  # URI of the test split's store, evaluated once at the end ("" = skip)
    table: str = "pairs"  # table of the store that holds the paired latents
    x_column: str = "image"  # latent column fed to the x adapter
    y_column: str = "text"  # latent column fed to the y adapter
    group_column: str | None = "image_id"  # which x item a row belongs to (int or str ids); None = one row per item
    backend: Literal["local", "ray"] = "local"  # "ray": the orchestration layer injects a Ray Data stream factory
    x_encoder: str | None = None  # ENCODERS name that produced the x latents (recorded in the export)
    y_encoder: str | None = None
    x_modality: str | None = None  # what the x inputs are ("image", "audio", ...); None = x_column
    y_modality: str | None = None

    def __post_init__(self) -> None:
        names = [self.x_column, self.y_column] + ([self.group_column] if self.group_column else [])
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"data.x_column, y_column and group_column must be distinct non-empty names, got {names}")
        if self.val_store and self.val_store == self.test_store:
            raise ValueError("data.val_store and data.test_store are the same store: never select a model on test data")

    def store_uri(self, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
        return {"train": self.store, "val": self.val_store, "test": self.test_store}[split]


@config_dataclass
class FuseMixLossConfig:
    temperature_init: float = 0.07  # logits = cos / temperature (learned, no weight decay)
    temperature_min: float = 0.001  # clamp range, applied before every training forward
    temperature_max: float = 0.5
    learn_temperature: bool = True
    mixup_alpha: float = 1.0  # lam ~ Beta(alpha, alpha), one per batch, shared by x and y; 0 = no mixup
    mixup_mode: MixupMode = "permutation"  # "permutation" (default, batch stays B) or "halves" (the reference, B/2)
    multi_positive: bool = False  # MIL-NCE: rows with the same data.group_column are all positives
    chunk_size: int | None = None  # rows of the B x B logits computed at once; None = automatic (<= 1 GiB)

    def __post_init__(self) -> None:
        if not 0.0 < self.temperature_min <= self.temperature_init <= self.temperature_max:
            raise ValueError(
                "need 0 < loss.temperature_min <= loss.temperature_init <= loss.temperature_max, got "
                f"{self.temperature_min}, {self.temperature_init}, {self.temperature_max}"
            )
        if self.mixup_alpha < 0:
            raise ValueError(f"loss.mixup_alpha must be >= 0, got {self.mixup_alpha}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"loss.chunk_size must be >= 1 or null, got {self.chunk_size}")


@config_dataclass
class FuseMixOptimConfig:
    """AdamW; linear warm-up (first ``warmup_steps`` steps of epoch 0) then per-epoch cosine."""

    lr: float = 1e-3
    min_lr: float = 1e-6  # the cosine ends here at the last epoch
    warmup_lr: float = 1e-6  # the warm-up starts here
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.1  # weight matrices only; never LayerNorm, biases or the temperature
    implementation: Literal["auto", "foreach", "fused", "for-loop"] = "auto"  # auto: fused (CPU and CUDA)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.min_lr < 0 or self.warmup_lr < 0:
            raise ValueError(f"optim learning rates must be positive, got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")


@config_dataclass
class FuseMixTrainConfig:
    batch_size: int = 40960  # input pairs per step (before mixup)
    epochs: int = 500
    seed: int = 42  # shuffling, mixup, dropout and initialisation all derive from it
    drop_last: bool = True  # skip an epoch's last, smaller batch (as the reference)
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
    # bf16 autocast for the adapters (the loss stays fp32): true needs CUDA; "auto" = on a CUDA device
    # that supports bf16, fp32 elsewhere (the jobs' default config); false = fp32
    amp: Union[bool, Literal["auto"]] = False
    num_threads: int | None = None  # torch intra-op threads (None = leave torch's setting)
    check_finite: bool = True  # reject batches with NaN / inf latents (one cheap pass per batch)
    run_dir: str = "runs/fusemix"  # where a run without a context writes (LocalContext)

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"train.batch_size must be >= 2 (a contrastive batch needs negatives), got {self.batch_size}")
        if self.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"train.num_threads must be >= 1, got {self.num_threads}")


@config_dataclass
class FuseMixEvalConfig:
    ks: tuple[int, ...] = (1, 5, 10)  # recall@K cut-offs, both directions
    select_metric: str = "rsum"  # validation metric that picks the best adapters (a retrieval_recall key)
    batch_size: int = 4096  # rows embedded at once
    chunk_size: int = 1024  # rows of the similarity matrix scored at once
    test_at_end: bool = True  # evaluate the selected adapters once on the test split after the last epoch

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"eval.ks must be positive integers, got {list(self.ks)}")
        allowed = {f"{d}_r{k}" for d in ("i2t", "t2i") for k in self.ks} | {"i2t_mean", "t2i_mean", "r_mean", "rsum"}
        if self.select_metric not in allowed:
            raise ValueError(f"eval.select_metric {self.select_metric!r} is not one of {sorted(allowed)}")
        if self.batch_size < 1 or self.chunk_size < 1:
            raise ValueError("eval.batch_size and eval.chunk_size must be >= 1")


@config_dataclass
class FuseMixConfig:
    data: FuseMixDataConfig = FuseMixDataConfig()
    model: FuseMixModelConfig = FuseMixModelConfig()
    loss: FuseMixLossConfig = FuseMixLossConfig()
    optim: FuseMixOptimConfig = FuseMixOptimConfig()
    train: FuseMixTrainConfig = FuseMixTrainConfig()
    eval: FuseMixEvalConfig = FuseMixEvalConfig()

    def __post_init__(self) -> None:
        if self.loss.multi_positive and self.data.group_column is None:
            raise ValueError("loss.multi_positive needs data.group_column (the ids that define positives)")
