"""FuseMix training recipe: align two frozen encoders by training adapters on their latents.

``train_fusemix(config, context=None, *, stream_factory=None)`` reads top to bottom:

1. open the train / val streams (``fusemix.data``) and load the validation split whole;
2. build the adapters, AdamW (decay on matrices only) and seed every RNG from ``train.seed``;
3. restore model, optimiser, step, RNG states and best-so-far from ``context.restored_checkpoint()``;
4. per epoch: stream shuffled batches -> mixup in latent space (one shared lambda) -> adapters ->
   symmetric InfoNCE / MIL-NCE (chunked logits) -> AdamW step with the warm-up + cosine rate; then
   recall@K both ways on the validation split; keep the best adapters (validation only, never
   test); at the last epoch evaluate the best adapters once on the test split; report the metrics
   with a checkpoint directory;
5. export the best adapters to ``<output_dir>/export`` (``mmsearch.embed``) and write
   ``<output_dir>/final_metrics.json``.

Reported every epoch: ``epoch``, ``step``, ``loss``, ``temperature``, ``lr``, ``val_<key>`` for
every ``retrieval_recall`` key, ``pairs_per_s`` (input pairs / training wall time),
``mixed_pairs_per_s`` (pairs in the contrastive loss / s), ``data_wait_s`` (time blocked on the
stream) and ``compute_s`` (the rest of the training time), ``eval_s``, ``peak_rss_mib`` (the
process's peak resident memory so far), ``best_epoch``,
``best_val_<select_metric>``; the last epoch adds ``test_<key>`` for the selected adapters.

On a CPU everything stays fp32; on CUDA ``train.amp`` (true, or "auto" where the GPU supports bf16)
runs the adapters under bf16 autocast while the loss stays fp32. Batches of tens of thousands of pairs fit because the logits are chunked
(``loss.chunk_size``). One worker only: the contrastive batch is global, so data parallelism would
need an all-gather of embeddings (not implemented; ``world_size > 1`` is rejected).
"""
from __future__ import annotations

import copy
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from mmsearch.metrics.selection import is_new_best
from mmsearch.adapters.loss import contrastive_loss
from mmsearch.adapters.mixup import mix_latent_pairs
from mmsearch.adapters.model import FuseMixModel
from mmsearch.config import config_to_dict, load_config
from mmsearch.embed import SideSpec, export_adapters
from mmsearch.io import atomic_write_json
from mmsearch.metrics.retrieval import retrieval_recall_chunked
from mmsearch.recipes.context import LocalContext, RunContext
from mmsearch.recipes.fusemix.checkpoint import TrainProgress, restore_checkpoint, write_checkpoint
from mmsearch.recipes.fusemix.config import FuseMixConfig, FuseMixLossConfig
from mmsearch.recipes.fusemix.data import (
    BatchStream,
    EvalSet,
    FuseMixDataError,
    StreamFactory,
    column_encoder,
    default_stream_factory,
    group_ids_to_tensor,
    latent_column,
    load_eval_set,
)
from mmsearch.recipes.fusemix.optim import build_optimizer, learning_rate, set_learning_rate
from mmsearch.recipes.precision import autocast_here, device_here
from mmsearch.machine import peak_rss_mib
from mmsearch.threads import torch_threads

log = logging.getLogger(__name__)

EXPORT_DIR = "export"
FINAL_METRICS = "final_metrics.json"

__all__ = ["BatchStream", "FuseMixConfig", "StreamFactory", "evaluate_retrieval", "fusemix_step", "train_fusemix"]


@dataclass
class EpochStats:
    loss: float
    lr: float
    steps: int
    input_pairs: int
    mixed_pairs: int
    dropped_rows: int
    data_wait_s: float
    train_s: float


def train_fusemix(
    config: FuseMixConfig | Mapping[str, Any] | str | Path,
    context: RunContext | None = None,
    *,
    stream_factory: StreamFactory | None = None,
) -> dict[str, Any]:
    """Train FuseMix adapters; returns the final metrics (with ``export_dir``)."""
    cfg = config if isinstance(config, FuseMixConfig) else load_config(FuseMixConfig, config)
    context = context if context is not None else LocalContext(cfg.train.run_dir)
    if context.world_size > 1:
        raise NotImplementedError("train_fusemix runs on one worker (the contrastive batch is global); got world_size > 1")
    factory = stream_factory or getattr(context, "stream_factory", None) or default_stream_factory
    with torch_threads(cfg.train.num_threads):  # for this run only
        return _train(cfg, context, factory)


def _train(cfg: FuseMixConfig, context: RunContext, factory: StreamFactory) -> dict[str, Any]:
    device = _resolve_device(cfg.train.device)
    if cfg.train.amp is True and device.type != "cuda":
        raise ValueError(f"train.amp needs a CUDA device (CPU paths stay fp32); device is {device}")
    log.info("FuseMix on %s, %s", device, "bf16 autocast" if _amp(cfg, device) else "fp32")

    train_stream = factory(cfg.data, "train", context.rank, context.world_size)
    val_set = load_eval_set(factory(cfg.data, "val", context.rank, context.world_size), cfg.data)
    x_dim, y_dim = _latent_dims(cfg, val_set)
    sides = (  # encoder names: from the config, else from the store's column metadata
        SideSpec(cfg.data.x_column, x_dim, cfg.data.x_encoder or column_encoder(train_stream, cfg.data.x_column),
                 cfg.data.x_modality),
        SideSpec(cfg.data.y_column, y_dim, cfg.data.y_encoder or column_encoder(train_stream, cfg.data.y_column),
                 cfg.data.y_modality),
    )

    torch.manual_seed(cfg.train.seed)
    mixup_rng = np.random.default_rng(cfg.train.seed)
    model = FuseMixModel.from_config(
        cfg.model, x_dim, y_dim,
        temperature_init=cfg.loss.temperature_init,
        temperature_bounds=(cfg.loss.temperature_min, cfg.loss.temperature_max),
        learn_temperature=cfg.loss.learn_temperature,
    ).to(device)
    optimizer = build_optimizer(model, cfg.optim, device)
    progress = TrainProgress()
    restored = context.restored_checkpoint()
    if restored is not None:
        progress = restore_checkpoint(Path(restored), model=model, optimizer=optimizer, mixup_rng=mixup_rng,
                                      device=device)
        log.info("resumed from %s after epoch %d", restored, progress.last_epoch)
    best_model = copy.deepcopy(model)
    if progress.best_state is not None:
        best_model.load_state_dict(progress.best_state)

    select_key = f"val_{cfg.eval.select_metric}"
    final: dict[str, Any] | None = None
    for epoch in range(progress.last_epoch + 1, cfg.train.epochs):
        stats, progress.global_step = _train_epoch(model, optimizer, train_stream, cfg, epoch, progress.global_step,
                                                   mixup_rng, device, (x_dim, y_dim))
        eval_start = time.perf_counter()
        val = evaluate_retrieval(model, val_set, cfg, device)
        metrics = _epoch_metrics(epoch, progress.global_step, stats, model, val)
        if is_new_best(metrics[select_key], progress.best_score):
            progress.best_score, progress.best_epoch = metrics[select_key], epoch
            best_model.load_state_dict(model.state_dict())
        # Reported epochs count completed epochs from 1 (the ASHA fidelity unit); the loop index
        # stays 0-based because the schedule and the data order are functions of it.
        metrics.update({"best_epoch": progress.best_epoch + 1, f"best_{select_key}": progress.best_score})
        last = epoch == cfg.train.epochs - 1
        if last and cfg.eval.test_at_end:
            metrics.update(_test_metrics(best_model, cfg, factory, context, device))
        metrics["eval_s"] = time.perf_counter() - eval_start
        progress.history.append(metrics)
        progress.last_epoch = epoch
        if last:
            # Under Ray Tune a trial ends as soon as it reports its last epoch, so the export
            # happens before that report, never after it.
            final = _finish(cfg, context, best_model, sides, progress)
        with tempfile.TemporaryDirectory(prefix=".fusemix-ckpt-", dir=context.output_dir) as scratch:
            write_checkpoint(Path(scratch), config=cfg, model=model, optimizer=optimizer, progress=progress,
                             mixup_rng=mixup_rng, device=device, sides=sides, best_model=best_model)
            context.report(metrics, Path(scratch))

    return final if final is not None else _finish(cfg, context, best_model, sides, progress)


def _amp(cfg: FuseMixConfig, device: torch.device) -> bool:
    """Whether the adapters run under bf16 autocast (``train.amp``: true, false or "auto")."""
    return autocast_here(cfg.train.amp, device) is not None


def _resolve_device(name: str) -> torch.device:
    return device_here(name, what="train.device")


def _latent_dims(cfg: FuseMixConfig, val_set: EvalSet) -> tuple[int, int]:
    """Latent dims from the data, checked against the config when it states them."""
    dims = []
    for side, found, expected in (("x", val_set.x.shape[1], cfg.model.x_dim), ("y", val_set.y.shape[1], cfg.model.y_dim)):
        column = getattr(cfg.data, f"{side}_column")
        if expected is not None and found != expected:
            raise FuseMixDataError(
                f"column {column!r} has dimension {found} in the data but model.{side}_dim is {expected} (dimension mismatch)"
            )
        dims.append(int(found))
    return dims[0], dims[1]


def _train_epoch(
    model: FuseMixModel,
    optimizer: torch.optim.Optimizer,
    stream: BatchStream,
    cfg: FuseMixConfig,
    epoch: int,
    global_step: int,
    mixup_rng: np.random.Generator,
    device: torch.device,
    dims: tuple[int, int],
) -> tuple[EpochStats, int]:
    """One pass over the training stream; returns the epoch's stats and the new global step."""
    model.train()
    batch_size = cfg.train.batch_size
    loss_sum, steps, input_pairs, mixed_pairs, dropped, wait, lr = 0.0, 0, 0, 0, 0, 0.0, float("nan")
    start = time.perf_counter()
    batches = iter(stream.epoch(epoch, batch_size, cfg.train.seed))
    while True:
        fetch = time.perf_counter()
        batch = next(batches, None)
        wait += time.perf_counter() - fetch
        if batch is None:
            break
        x = latent_column(batch, cfg.data.x_column, dims[0], check_finite=cfg.train.check_finite)
        y = latent_column(batch, cfg.data.y_column, dims[1], check_finite=cfg.train.check_finite)
        if len(x) != len(y):
            raise FuseMixDataError(f"batch columns differ in length: {len(x)} x rows vs {len(y)} y rows")
        if len(x) < 2 or (cfg.train.drop_last and len(x) < batch_size):
            dropped += len(x)
            continue
        groups = None
        if cfg.loss.multi_positive:
            if cfg.data.group_column not in batch:
                raise FuseMixDataError(f"batch has no group column {cfg.data.group_column!r}; columns: {sorted(batch)}")
            groups = group_ids_to_tensor(batch[cfg.data.group_column], column=cfg.data.group_column)
        lr = learning_rate(cfg.optim, cfg.train.epochs, epoch, global_step)
        set_learning_rate(optimizer, lr)
        value, in_loss = fusemix_step(model, optimizer, x.to(device, non_blocking=True), y.to(device, non_blocking=True),
                                      loss_cfg=cfg.loss, rng=mixup_rng, amp=_amp(cfg, device),
                                      group_ids=None if groups is None else groups.to(device))
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at epoch {epoch}, step {global_step}")
        loss_sum += value
        steps += 1
        global_step += 1
        input_pairs += len(x)
        mixed_pairs += in_loss
    model.clamp_temperature_()  # keep the reported / exported temperature inside its bounds
    if steps == 0:
        raise FuseMixDataError(
            f"epoch {epoch}: the training split gave no batch of {batch_size} pairs ({dropped} rows seen); "
            "lower train.batch_size, set train.drop_last=false, or check the store"
        )
    stats = EpochStats(loss_sum / steps, lr, steps, input_pairs, mixed_pairs, dropped, wait, time.perf_counter() - start)
    return stats, global_step


def fusemix_step(
    model: FuseMixModel,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_cfg: FuseMixLossConfig,
    rng: np.random.Generator,
    amp: bool = False,
    group_ids: torch.Tensor | None = None,
) -> tuple[float, int]:
    """One optimiser step on a batch of latent pairs already on the model's device.

    Mixup (one shared lambda) -> clamp temperature -> adapters -> symmetric InfoNCE / MIL-NCE ->
    AdamW. Returns the loss value and the number of pairs in the contrastive loss.
    """
    mixed = mix_latent_pairs(x, y, alpha=loss_cfg.mixup_alpha, mode=loss_cfg.mixup_mode, rng=rng,
                             group_ids=group_ids if loss_cfg.multi_positive else None)
    model.clamp_temperature_()
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp):
        zx, zy = model(mixed.x, mixed.y)
    loss = contrastive_loss(zx, zy, model.temperature, group_ids=mixed.group_ids, chunk_size=loss_cfg.chunk_size)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item(), len(mixed.x)


@torch.no_grad()
def _embed(adapter_embed, latents: torch.Tensor, batch_size: int, device: torch.device, amp: bool) -> torch.Tensor:
    out = []
    for start in range(0, len(latents), batch_size):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(adapter_embed(latents[start : start + batch_size].to(device)).float())
    return torch.cat(out)


def evaluate_retrieval(
    model: FuseMixModel, eval_set: EvalSet, cfg: FuseMixConfig, device: torch.device
) -> dict[str, float]:
    """Recall@K both ways (``mmsearch.metrics.retrieval``) of ``model`` on a whole split."""
    was_training = model.training
    model.eval()
    try:
        zx = _embed(model.embed_x, eval_set.x, cfg.eval.batch_size, device, _amp(cfg, device))
        zy = _embed(model.embed_y, eval_set.y, cfg.eval.batch_size, device, _amp(cfg, device))
        return retrieval_recall_chunked(zx, zy, eval_set.y_to_x.to(device), cfg.eval.ks, chunk_size=cfg.eval.chunk_size)
    finally:
        model.train(was_training)


def _epoch_metrics(
    epoch: int, step: int, stats: EpochStats, model: FuseMixModel, val: dict[str, float]
) -> dict[str, Any]:
    compute = max(stats.train_s - stats.data_wait_s, 0.0)
    return {
        "epoch": epoch + 1,
        "step": step,
        "loss": stats.loss,
        "temperature": float(model.temperature.detach()),
        "lr": stats.lr,
        **{f"val_{k}": v for k, v in val.items()},
        "pairs_per_s": stats.input_pairs / stats.train_s if stats.train_s > 0 else float("nan"),
        "mixed_pairs_per_s": stats.mixed_pairs / stats.train_s if stats.train_s > 0 else float("nan"),
        "data_wait_s": stats.data_wait_s,
        "compute_s": compute,
        "train_s": stats.train_s,
        "steps": stats.steps,
        "dropped_rows": stats.dropped_rows,
        "peak_rss_mib": peak_rss_mib(),  # the process's peak so far: the stream keeps it bounded
    }


def _test_metrics(best_model: FuseMixModel, cfg: FuseMixConfig, factory: StreamFactory, context: RunContext,
                  device: torch.device) -> dict[str, float]:
    test_set = load_eval_set(factory(cfg.data, "test", context.rank, context.world_size), cfg.data)
    if (test_set.x.shape[1], test_set.y.shape[1]) != (best_model.x_dim, best_model.y_dim):
        raise FuseMixDataError(
            f"test split latents are {test_set.x.shape[1]}-d / {test_set.y.shape[1]}-d, "
            f"the adapters take {best_model.x_dim}-d / {best_model.y_dim}-d (dimension mismatch)"
        )
    return {f"test_{k}": v for k, v in evaluate_retrieval(best_model, test_set, cfg, device).items()}


def _finish(cfg: FuseMixConfig, context: RunContext, best_model: FuseMixModel, sides: tuple[SideSpec, SideSpec],
            progress: TrainProgress) -> dict[str, Any]:
    """Export the selected adapters and write the final metrics next to them."""
    final = dict(progress.history[-1]) if progress.history else {}
    export_dir = Path(context.output_dir) / EXPORT_DIR
    if context.rank == 0:
        export_adapters(best_model, export_dir, x=sides[0], y=sides[1], metadata={
            "best_epoch": progress.best_epoch + 1,
            "selected_on": f"val_{cfg.eval.select_metric}",
            "metrics": final,
            "config": config_to_dict(cfg),
        })
        final["export_dir"] = str(export_dir)
        atomic_write_json(Path(context.output_dir) / FINAL_METRICS, final)
    return final
