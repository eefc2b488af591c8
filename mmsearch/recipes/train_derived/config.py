"""Config of derived-architecture training (``mmsearch.recipes.train_derived.train_derived``).

Sections: ``arch`` (which architecture), ``data`` (which precomputed task data), ``model`` (the
network's widths: :class:`~mmsearch.recipes.model_config.ModelConfig`, shared with the search), ``head``, ``optim``, ``train``
(epochs, per-worker batch size, precision, device), ``eval`` (validation every epoch, test at the
end, prediction files), ``scaling`` and ``run`` (Ray Train: workers, resources, fault tolerance,
storage; ignored by a direct, one-process run), ``deepspeed`` (optional DeepSpeed JSON config),
``seed`` and ``output_dir``.

Defaults are MMnas's final training for VQA (``train_vqa.py``: H=512, 8 heads of 64, dropout 0.1,
Adam(0.9, 0.98, eps 1e-9) at lr 1.2e-4 with 1/4, 1/2, 3/4 warm-up over epochs 1-3, x0.2 at
epochs 10 and 12, 13 epochs, batch 64 per process, grad clip 1.0). ``configs/train/*.yaml`` are
small configs that run on a CPU in minutes.

``arch`` is a named spec (``mcan``, ``mmnas_vqa``, ...), a spec JSON file, a finished search
(its output directory or its Tune experiment directory; the best architecture is taken), or a
spec already parsed into a dict. :func:`resolve_config` replaces it with the spec's dict, fills
the sizes the data decides (text input, vocabulary, region width, answer count) and reads a
``deepspeed`` file into a dict, so the resolved config written next to every run and into every
checkpoint describes the run completely: no file it names is needed again.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import Field

from mmsearch.config import config_dataclass, config_path
from mmsearch.tasks import HeadConfig, primary_metric
from mmsearch.nas import ArchSpec, FusionSpec, spec_from_dict
from mmsearch.recipes.model_config import ModelConfig
from mmsearch.recipes.resolve import check_task_agreement, data_sizes
from mmsearch.data.task_data import TaskDataConfig, TaskInfo
from mmsearch.recipes.train_derived.arch import resolve_arch

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # as Tune experiment names (jobs' --name)


@config_dataclass
class TrainOptimConfig:
    """Adam on all weights, learning rate constant within an epoch (a pure function of the epoch)."""

    lr: float = Field(default=1.2e-4, gt=0.0)  # MMnas VQA 1.2e-4, VG 1.4e-4, ITM 1.5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(default=1e-9, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    lr_warmup: tuple[float, ...] = (0.25, 0.5, 0.75)  # multipliers of lr in epochs 1, 2, ... (MMnas)
    lr_decay_epochs: tuple[int, ...] = (10, 12)  # from each of these (1-based) epochs on, x lr_decay_rate (ITM: 36)
    lr_decay_rate: float = Field(default=0.2, gt=0.0)
    grad_clip: Optional[float] = Field(default=1.0, gt=0.0)  # max global grad norm (None = off)

    def __post_init__(self) -> None:
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be in [0, 1), got {list(self.betas)}")
        if any(m <= 0 for m in self.lr_warmup):
            raise ValueError(f"optim.lr_warmup multipliers must be positive, got {list(self.lr_warmup)}")
        if any(e < 1 for e in self.lr_decay_epochs):
            raise ValueError(f"optim.lr_decay_epochs are 1-based epochs, got {list(self.lr_decay_epochs)}")


@config_dataclass
class TrainSettings:
    epochs: int = Field(default=13, ge=1)  # MMnas VQA / VG: 13, ITM: 100
    batch_size: int = Field(default=64, ge=1)  # per worker (MMnas: 64 per process); global = x workers
    drop_last: bool = True  # skip each pass's last, smaller batch
    max_steps_per_epoch: Optional[int] = Field(default=None, ge=1)  # cap on steps per epoch (smoke runs)
    # "auto": bf16 autocast on a GPU that supports it, else fp32 (CPU paths stay fp32: bf16 matmul
    # is hundreds of times slower on CPUs without AMX). Under DeepSpeed its JSON's bf16 section rules.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: str = "auto"  # direct runs: "auto" (CUDA if available), "cpu", "cuda", "cuda:1"; Ray Train decides otherwise
    num_threads: Optional[int] = Field(default=None, ge=1)  # torch intra-op threads per worker (None = torch's default)


@config_dataclass
class TrainEvalSettings:
    batch_size: int = Field(default=128, ge=1)
    every_epochs: int = Field(default=1, ge=1)  # validate every k epochs (and always after the last)
    max_samples: Optional[int] = Field(default=None, ge=1)  # cap on per-epoch validation samples (None = all)
    test: bool = True  # evaluate the final model on the test split
    predictions: bool = True  # write prediction files for val and test at the end


@config_dataclass
class ScalingSettings:
    """Ray Train workers (``ray.train.ScalingConfig``); a direct run is one process."""

    num_workers: int = Field(default=1, ge=1)
    use_gpu: bool = False  # one GPU per worker (gpus_per_worker)
    cpus_per_worker: float = Field(default=1.0, gt=0.0)  # fractional on small machines (leave CPUs to Ray Data)
    gpus_per_worker: float = Field(default=1.0, gt=0.0)  # with use_gpu
    # DDP's find_unused_parameters. None: probe one training step and turn it on only if some
    # parameter gets no gradient (every shipped op and head uses all of its parameters).
    find_unused_parameters: Optional[bool] = None
    # DeepSpeed on CPU builds a shared-memory collective op (JIT, 30-100 s the first time);
    # false skips it and DeepSpeed falls back to plain gloo collectives (what the tests do).
    deepspeed_shm_op: bool = True


@config_dataclass
class RunSettings:
    """Where a Ray Train run keeps checkpoints and outputs, and how it survives failures."""

    name: str = ""  # run name in storage ("" = train_<task>_<arch>_seed<seed>); same name + storage = resume
    storage_path: str = "~/mmsearch_results"  # local dir, NFS mount, or s3://bucket/prefix
    s3_endpoint_url: Optional[str] = None  # S3-compatible store; else AWS_ENDPOINT_URL / AWS default
    max_failures: int = Field(default=2, ge=-1)  # worker-group restarts from the last checkpoint (-1 = forever)
    checkpoints_to_keep: int = Field(default=2, ge=1)

    def __post_init__(self) -> None:
        if self.name and not _RUN_NAME.match(self.name):  # one directory under storage_path, never outside it
            raise ValueError(f"run.name {self.name!r} must be 1-128 characters of letters, digits, '.', '_', '-', "
                             "starting with a letter or digit")


@config_dataclass
class TrainDerivedConfig:
    arch: Union[str, dict[str, Any]] = "mcan"  # named spec | spec JSON | search output / experiment dir | spec dict
    data: TaskDataConfig = TaskDataConfig()
    model: ModelConfig = ModelConfig()
    head: Optional[HeadConfig] = None  # None = the defaults of the data's task head
    optim: TrainOptimConfig = TrainOptimConfig()
    train: TrainSettings = TrainSettings()
    eval: TrainEvalSettings = TrainEvalSettings()
    scaling: ScalingSettings = ScalingSettings()
    run: RunSettings = RunSettings()
    deepspeed: Union[str, dict[str, Any], None] = None  # DeepSpeed JSON config (path, or the parsed dict)
    seed: int = 0  # initialisation, data order and dropout derive from it (MMnas: random per run)
    output_dir: str = ""  # direct runs ("" = runs/train_<task>_seed<seed>); Ray runs write under run.storage_path

    def __post_init__(self) -> None:
        if isinstance(self.arch, str) and not self.arch:
            raise ValueError("arch is empty: name a spec (mcan, mmnas_vqa, ...), a spec JSON file or a search directory")
        check_task_agreement(self.head, self.data, self.model.text_input)

    @property
    def primary_metric(self) -> str:
        """The task's validation metric (higher is better), reported as ``val_metric``."""
        return primary_metric(self.data.task)

    @property
    def run_dir(self) -> str:
        return self.output_dir or f"runs/train_{self.data.task}_seed{self.seed}"

    @property
    def spec(self) -> ArchSpec | FusionSpec:
        """The architecture of a resolved config (``arch`` is a dict after :func:`resolve_config`)."""
        if not isinstance(self.arch, dict):
            raise ValueError(f"arch {self.arch!r} is not resolved yet; call resolve_config(config, task_data.info) first")
        return spec_from_dict(self.arch)

    @property
    def deepspeed_config(self) -> dict[str, Any] | None:
        if isinstance(self.deepspeed, str):
            raise ValueError("deepspeed is not resolved yet; call resolve_config first")
        return self.deepspeed


def resolve_config(cfg: TrainDerivedConfig, info: TaskInfo) -> TrainDerivedConfig:
    """``cfg`` made self-contained: the architecture and DeepSpeed config read into dicts, the sizes
    the data decides filled from ``info`` (a set value must agree), the output directory fixed."""
    spec = resolve_arch(cfg.arch)
    changes, head = data_sizes(cfg.model, cfg.head, cfg.data, info)
    # Fields replaced, not the config validated again (it was, once, where it was read): the
    # classes check the new values (types, bounds, __post_init__).
    resolved = dataclasses.replace(
        cfg,
        arch=spec.to_dict(),
        model=dataclasses.replace(cfg.model, **changes),
        head=head,
        deepspeed=load_deepspeed_json(cfg.deepspeed),
        output_dir=cfg.run_dir,
    )
    resolved.model.net_config(text_input=cfg.data.text_input, prefix="model: ")  # every size now known and checked
    return resolved


def load_deepspeed_json(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """A DeepSpeed config from a JSON file (or a dict), with the checks that fail before any worker starts."""
    if value is None:
        return None
    if isinstance(value, str):
        path = config_path(value)  # configs/deepspeed/...: the shipped one where the path is not here
        if not path.is_file():
            raise FileNotFoundError(f"DeepSpeed config not found: {path}")
        try:
            value = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"DeepSpeed config {path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"a DeepSpeed config must be a JSON object, got {type(value).__name__}")
    stage = value.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"deepspeed zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    if value.get("fp16", {}).get("enabled") and value.get("bf16", {}).get("enabled"):
        raise ValueError("deepspeed: fp16 and bf16 cannot both be enabled")
    return value


def learning_rate(optim: TrainOptimConfig, epoch: int) -> float:
    """Learning rate in 1-based ``epoch``: warm-up multipliers, then the base rate, times
    ``lr_decay_rate`` for every decay epoch reached (MMnas's schedule at epoch granularity)."""
    if epoch < 1:
        raise ValueError(f"epochs are 1-based, got {epoch}")
    lr = optim.lr
    if epoch <= len(optim.lr_warmup):
        lr *= optim.lr_warmup[epoch - 1]
    for decay_epoch in optim.lr_decay_epochs:
        if epoch >= decay_epoch:
            lr *= optim.lr_decay_rate
    return lr


def default_run_name(cfg: TrainDerivedConfig) -> str:
    """``train_<task>_<arch>_seed<seed>``, the arch named after its source (a named spec or a file)."""
    if isinstance(cfg.arch, str):
        label = Path(cfg.arch.rstrip("/")).stem or "arch"
    else:
        label = Path(str(cfg.arch.get("source") or "arch").split()[-1].rstrip("/")).stem or "arch"
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[:40]
    return f"train_{cfg.data.task}_{safe}_seed{cfg.seed}"


__all__ = [
    "RunSettings",
    "ScalingSettings",
    "TrainDerivedConfig",
    "TrainEvalSettings",
    "TrainOptimConfig",
    "TrainSettings",
    "default_run_name",
    "learning_rate",
    "load_deepspeed_json",
    "resolve_config",
]
