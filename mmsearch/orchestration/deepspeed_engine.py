"""DeepSpeed inside a Ray Train worker: the engine of derived-architecture training on request.

``deepspeed.initialize`` runs in every worker and reuses the process group Ray Train created
(gloo on CPU, NCCL on GPUs). The DeepSpeed JSON config (ZeRO stage 0-3, bf16 / fp16, gradient
accumulation, an optimizer) is completed from the training config where it leaves a value out
or says ``"auto"``: the micro-batch is ``train.batch_size``, the global batch ``micro x
accumulation x workers``, gradient clipping ``optim.grad_clip``. Without an ``"optimizer"``
section the engine gets a torch Adam built from ``optim`` (a "client optimizer"): DeepSpeed's own
CPU Adam / fused Adam are JIT-compiled on first use (1-5 minutes); on GPUs an ``"optimizer"``
section (FusedAdam) is the faster choice.

Checkpoints: every rank calls ``save_checkpoint`` into its own directory (rank 0 writes the
module states, each rank its ZeRO optimizer shard); Ray Train merges the ranks' directories into
one. Rank 0 also writes ``model.pt``, the full fp32 weights (ZeRO-3 parameters are gathered from
all ranks first), so evaluation never needs DeepSpeed. ``deepspeed`` is imported lazily.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

import torch
from torch import Tensor

from mmsearch.batch import MultimodalBatch
from mmsearch.io import atomic_torch_save
from mmsearch.recipes.train_derived.engine import MODEL_NAME, DerivedModel, autocast_context

if TYPE_CHECKING:
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig

log = logging.getLogger(__name__)
CHECKPOINT_DIR = "deepspeed"
CHECKPOINT_TAG = "state"
QUIET_STEPS = 10**9  # DeepSpeed prints its step log every steps_per_print steps


def _auto(value: Any) -> bool:
    return value is None or value == "auto"


def complete_deepspeed_config(ds: dict[str, Any], cfg: "TrainDerivedConfig", world_size: int) -> dict[str, Any]:
    """The DeepSpeed config with batch sizes, clipping and optimizer settings filled from ``cfg``;
    a value the JSON sets must agree with the training config."""
    out = copy.deepcopy(ds)
    micro = cfg.train.batch_size
    accumulation = 1 if _auto(out.get("gradient_accumulation_steps")) else int(out["gradient_accumulation_steps"])
    expected = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation,
        "train_batch_size": micro * accumulation * world_size,
    }
    for key, value in expected.items():
        if _auto(out.get(key)):
            out[key] = value
        elif int(out[key]) != value:
            raise ValueError(
                f"deepspeed {key} is {out[key]} but the training config implies {value} "
                f"(train.batch_size={micro} per worker x {accumulation} accumulation steps x {world_size} workers); "
                f"set it to \"auto\" or make them agree"
            )
    if _auto(out.get("gradient_clipping")):
        out["gradient_clipping"] = float(cfg.optim.grad_clip or 0.0)
    out.setdefault("steps_per_print", QUIET_STEPS)
    out.setdefault("wall_clock_breakdown", False)
    optimizer = out.get("optimizer")
    if optimizer is None:
        out.setdefault("zero_allow_untested_optimizer", True)  # our torch Adam (a client optimizer)
    else:
        params = optimizer.setdefault("params", {})
        defaults = {"lr": cfg.optim.lr, "betas": list(cfg.optim.betas), "eps": cfg.optim.eps, "weight_decay": cfg.optim.weight_decay}
        for key, value in defaults.items():
            if _auto(params.get(key)):
                params[key] = value
    return out


def skip_cpu_shm_op_build() -> None:
    """Make DeepSpeed's torch backend skip building its shared-memory CPU collective op (a JIT
    C++ build of 30-100 s); collectives then use plain gloo. Must run before ``initialize``."""
    import deepspeed.comm.torch  # noqa: F401  (registers the submodule)

    # Through sys.modules: ``import deepspeed.comm.torch as m`` binds ``m`` to the real ``torch``
    # package (``deepspeed.comm`` has an attribute named ``torch``) and the patch does nothing.
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None


class DeepSpeedEngine:
    """:class:`~mmsearch.recipes.train_derived.engine.TrainEngine` over a ``DeepSpeedEngine``."""

    def __init__(self, model: DerivedModel, cfg: "TrainDerivedConfig", *, world_size: int, rank: int) -> None:
        import deepspeed

        ds = cfg.deepspeed_config
        if ds is None:
            raise ValueError("DeepSpeedEngine needs a deepspeed config")
        if not cfg.scaling.deepspeed_shm_op:
            skip_cpu_shm_op_build()
        config = complete_deepspeed_config(ds, cfg, world_size)
        client = None
        if "optimizer" not in config:
            o = cfg.optim
            client = torch.optim.Adam(model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], optimizer=client,
            config=config, dist_init_required=False,
        )
        self.model: DerivedModel = self.engine.module
        self.device = torch.device(self.engine.device)
        self.stage = int(config.get("zero_optimization", {}).get("stage", 0))
        self.gathers_parameters = self.stage == 3
        self.rank, self.world_size = rank, world_size
        self.dtype = torch.bfloat16 if config.get("bf16", {}).get("enabled") else (
            torch.float16 if config.get("fp16", {}).get("enabled") else None)
        precision = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.dtype]
        accumulation = config["gradient_accumulation_steps"]
        self.description = (f"DeepSpeed ZeRO-{self.stage} x{world_size} on {self.device}, {precision}, "
                            f"global batch {config['train_batch_size']} (accumulation {accumulation}), "
                            f"{'client torch Adam' if client is not None else config['optimizer'].get('type')}")

    def forward(self, batch: MultimodalBatch) -> dict[str, Tensor]:
        # With a bf16 / fp16 section DeepSpeed holds the module's weights in 16 bits and switches an
        # outer torch.autocast off inside its forward (deepspeed.runtime.torch_autocast.
        # autocast_if_enabled), so the inputs must come in the weights' dtype (seen on a GPU: "mat1
        # and mat2 must have the same dtype"). The loss, outside the engine, still runs under autocast.
        dtype = self.weight_dtype()
        if dtype != torch.float32:
            batch = batch.with_float_dtype(dtype) if isinstance(batch, MultimodalBatch) else (
                batch.to(dtype) if isinstance(batch, Tensor) and batch.is_floating_point() else batch)
        return self.engine(batch)

    def weight_dtype(self) -> torch.dtype:
        """The dtype DeepSpeed keeps the module's floating weights in (fp32 unless a bf16 / fp16 section converted them)."""
        return next((p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.float32)

    def step(self, loss: Tensor) -> float | None:
        self.engine.backward(loss)
        self.engine.step()  # DeepSpeed steps the optimiser at accumulation boundaries only
        norm = self.engine.get_global_grad_norm()
        return None if norm is None else float(norm)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def autocast(self) -> ContextManager[Any]:
        # 16-bit parameters take fp32 inputs (features, boxes) through autocast.
        return autocast_context(self.device, self.dtype)

    def save(self, directory: Path, rank: int) -> None:
        self.engine.save_checkpoint(str(directory / CHECKPOINT_DIR), tag=CHECKPOINT_TAG)
        weights = self.full_state_dict()
        if rank == 0:
            atomic_torch_save(weights, directory / MODEL_NAME)

    def full_state_dict(self) -> dict[str, Tensor]:
        """The whole model's weights in fp32 on the CPU (ZeRO-3: gathered; every rank must call)."""
        gather: ContextManager[Any] = contextlib.nullcontext()
        if self.stage == 3:
            import deepspeed

            gather = deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None)
        with gather:
            if self.rank != 0:
                return {}
            return {k: v.detach().float().cpu().clone() for k, v in self.model.state_dict().items()}

    def load(self, directory: Path) -> None:
        shards = list((directory / CHECKPOINT_DIR / CHECKPOINT_TAG).glob("zero_pp_rank_*_optim_states.pt"))
        if self.stage > 0 and shards and len(shards) != self.world_size:
            raise ValueError(f"checkpoint {directory} holds ZeRO-{self.stage} optimizer shards of {len(shards)} workers; "
                             f"resume it with {len(shards)} workers (now {self.world_size})")
        path, _ = self.engine.load_checkpoint(str(directory / CHECKPOINT_DIR), tag=CHECKPOINT_TAG,
                                              load_optimizer_states=True, load_lr_scheduler_states=False)
        if path is None:
            raise FileNotFoundError(f"checkpoint {directory} has no DeepSpeed state under {CHECKPOINT_DIR}/ "
                                    "(written without DeepSpeed? resume it without --deepspeed)")


def deepspeed_engine(model: DerivedModel, cfg: "TrainDerivedConfig", find_unused_parameters: bool = False) -> DeepSpeedEngine:
    """The engine factory used in Ray Train workers when the config names a DeepSpeed config."""
    import ray.train

    context = ray.train.get_context()
    return DeepSpeedEngine(model, cfg, world_size=context.get_world_size(), rank=context.get_world_rank())


__all__ = ["CHECKPOINT_DIR", "DeepSpeedEngine", "complete_deepspeed_config", "deepspeed_engine", "skip_cpu_shm_op_build"]
