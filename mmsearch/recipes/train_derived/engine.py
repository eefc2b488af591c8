"""The model being trained and the engine that steps it: one process, DDP, or DeepSpeed.

:class:`DerivedModel` is the derived network and its task head as one module
(``forward(batch) -> head outputs``), so DDP and DeepSpeed wrap a single module and a checkpoint
holds one state dict. A :class:`TrainEngine` owns the device, the precision, the optimiser and
the (possibly wrapped) module the training forward runs through; the recipe only calls
``forward`` / ``step`` / ``set_lr`` / ``save`` / ``load``. :class:`LocalEngine` is plain torch
(one process, or DDP when given the wrapped module: ``mmsearch.orchestration.train_worker``);
``mmsearch.orchestration.deepspeed_engine`` provides the DeepSpeed one.

Every engine writes ``model.pt`` (the full fp32 state dict of :class:`DerivedModel`) into each
checkpoint, so evaluation loads any checkpoint with plain torch.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Protocol

import torch
from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.tasks import HeadConfig, build_head
from mmsearch.io import atomic_torch_save
from mmsearch.nas import ArchSpec, FusionSpec, NetConfig, build_derived, make_weight_optimizer
from mmsearch.data.task_data import TaskInfo

if TYPE_CHECKING:
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig

log = logging.getLogger(__name__)
MODEL_NAME = "model.pt"  # DerivedModel state dict (fp32), in every checkpoint
OPTIMIZER_NAME = "optimizer.pt"  # LocalEngine's optimiser state


class DerivedModel(nn.Module):
    """A derived network with its task head: ``forward(batch) -> head outputs``."""

    def __init__(self, spec: ArchSpec | FusionSpec, net: NetConfig, head: HeadConfig, embedding_init: Tensor | None = None) -> None:
        super().__init__()
        self.net = build_derived(spec, net, embedding_init)
        self.head = build_head(head, net.hidden, layer_norm=net.layer_norm)

    def forward(self, batch: MultimodalBatch) -> dict[str, Tensor]:
        return self.net(batch, self.head)


def build_model(cfg: "TrainDerivedConfig", info: TaskInfo) -> DerivedModel:
    """The model of a resolved config (pretrained token rows from the data when it has them)."""
    embedding = info.embedding_init if cfg.data.text_input == "tokens" else None
    init = None if embedding is None else torch.as_tensor(embedding).float()
    assert cfg.head is not None  # resolve_config sets it
    return DerivedModel(cfg.spec, cfg.model.net_config(text_input=cfg.data.text_input), cfg.head, init)


class TrainEngine(Protocol):
    model: DerivedModel  # the unwrapped module: evaluation, negative mining, weights
    device: torch.device
    gathers_parameters: bool  # True when every forward needs all ranks (ZeRO-3): evaluate on every rank
    description: str  # e.g. "DDP x2 on cpu, fp32" (logged and reported)

    def forward(self, batch: MultimodalBatch) -> dict[str, Tensor]:
        """The training forward, through the wrapped module (DDP / DeepSpeed)."""

    def step(self, loss: Tensor) -> float | None:
        """Backward, gradient clipping, optimiser step; returns the gradient norm when known."""

    def set_lr(self, lr: float) -> None: ...

    def autocast(self) -> ContextManager[Any]:
        """The mixed-precision context of forward passes (a no-op in fp32)."""

    def save(self, directory: Path, rank: int) -> None:
        """Write this rank's part of the training state into a checkpoint directory (every rank calls it)."""

    def load(self, directory: Path) -> None:
        """Restore what :meth:`save` wrote (every rank calls it)."""


# (model, config, find_unused_parameters) -> engine
EngineFactory = Callable[[DerivedModel, "TrainDerivedConfig", bool], TrainEngine]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device is {name!r} but CUDA is not available")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for ``"bf16"``, or for ``"auto"`` on a GPU that supports it; None (fp32) otherwise."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cpu":
            log.warning("train.precision=bf16 on the CPU: bf16 matmuls are far slower than fp32 on most CPUs")
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> ContextManager[Any]:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


class LocalEngine:
    """Plain torch Adam on one device; DDP when ``wrapped`` is the DDP module around ``model``."""

    def __init__(self, model: DerivedModel, cfg: "TrainDerivedConfig", device: torch.device,
                 wrapped: nn.Module | None = None, label: str = "one process") -> None:
        self.model = model.to(device)
        self.device = device
        self.wrapped = wrapped if wrapped is not None else self.model
        self.gathers_parameters = False
        self.dtype = autocast_dtype(cfg.train.precision, device)
        o = cfg.optim
        self.optimizer = make_weight_optimizer(self.model, None, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
        self.grad_clip = o.grad_clip
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        precision = "bf16 autocast" if self.dtype is not None else "fp32"
        self.description = f"{label} on {device}, {precision}"

    def forward(self, batch: MultimodalBatch) -> dict[str, Tensor]:
        return self.wrapped(batch)

    def step(self, loss: Tensor) -> float | None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = None
        if self.grad_clip is not None:
            with_grad = [p for p in self.params if p.grad is not None]
            norm = float(torch.nn.utils.clip_grad_norm_(with_grad, self.grad_clip, foreach=True))
        self.optimizer.step()
        return norm

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def autocast(self) -> ContextManager[Any]:
        return autocast_context(self.device, self.dtype)

    def save(self, directory: Path, rank: int) -> None:
        if rank == 0:  # weights and optimiser state are the same on every rank
            atomic_torch_save(self.model.state_dict(), directory / MODEL_NAME)
            atomic_torch_save(self.optimizer.state_dict(), directory / OPTIMIZER_NAME)

    def load(self, directory: Path) -> None:
        load_model_weights(self.model, directory)
        path = directory / OPTIMIZER_NAME
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {directory} has no {OPTIMIZER_NAME} (written by another engine, e.g. DeepSpeed?)")
        self.optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def local_engine(model: DerivedModel, cfg: "TrainDerivedConfig", find_unused_parameters: bool = False) -> LocalEngine:
    """The engine of a direct (one-process) run."""
    return LocalEngine(model, cfg, resolve_device(cfg.train.device))


def load_model_weights(model: nn.Module, directory: Path) -> None:
    path = Path(directory) / MODEL_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {directory} has no {MODEL_NAME}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {directory} does not fit this architecture / config: {exc}") from None


def parameters_without_grad(model: DerivedModel, objective: Any, batch: MultimodalBatch, epoch: int = 0) -> list[str]:
    """Names of trainable parameters that one training step on ``batch`` leaves without a gradient
    (what DDP's ``find_unused_parameters`` is for). Gradients are cleared afterwards."""
    model.zero_grad(set_to_none=True)
    pairs = objective.prepare(model, batch, epoch)
    loss, _ = objective.loss_from_outputs(model(pairs), pairs)
    loss.backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    return unused


__all__ = [
    "DerivedModel",
    "EngineFactory",
    "LocalEngine",
    "MODEL_NAME",
    "OPTIMIZER_NAME",
    "TrainEngine",
    "autocast_context",
    "autocast_dtype",
    "build_model",
    "load_model_weights",
    "local_engine",
    "parameters_without_grad",
    "resolve_device",
]
