"""Train a derived (fixed) architecture from scratch, as one function: ``train_derived(config, context)``.

Reads top to bottom:

1. data: a :class:`~mmsearch.data.task_data.TaskData` (the precomputed stores, or the given
   one); the config is resolved against it (:func:`~.config.resolve_config`: the
   architecture, the data-dependent sizes, the DeepSpeed config), and written next to the run;
2. model: :class:`~.engine.DerivedModel` (the derived network + task head), the
   same initial weights on every rank (seeded from ``seed``), and the task objective;
3. engine: device, precision, optimiser, and DDP or DeepSpeed when an ``engine_factory`` is
   given (``mmsearch.orchestration.train_worker`` does under Ray Train); one process otherwise;
4. restore: model, optimiser, progress and RNGs from ``context.restored_checkpoint()``;
5. epochs (1-based): the learning rate for the epoch (warm-up, then step decay), one pass over
   this worker's training samples, validation every ``eval.every_epochs`` (and after the last
   epoch, when the test split is evaluated and the prediction files are written too), then one
   report with a checkpoint (:mod:`.state`) per epoch;
6. artifacts in ``context.output_dir`` (rank 0): ``config.yaml``, ``arch.json``,
   ``predictions/`` (:mod:`.outputs`) and ``train_result.json``.

Reported every epoch (floats unless noted): ``epoch`` (int), ``lr``, ``train_loss`` and
``train_<log>`` (means of the objective's step logs over all ranks), ``grad_norm``, ``steps`` /
``samples`` (int, totals), ``samples_per_s`` (all ranks), ``step_s`` (median), ``data_s``,
``train_s``, ``eval_s``, ``epoch_s``, ``peak_rss_mib`` (the reporting rank's process: its peak
resident memory so far), ``world_size`` (int), and what the worker's shard says of its data
(Ray Data region rows: ``ray_data_blocks`` / ``ray_data_rows``, ints, totals so far), ``resumed_from_epoch`` (int: the
checkpoint's epoch this process started from, 0 for a fresh start); after a validation ``val_metric`` (the
task's primary metric: vqa_acc, itm_rsum or vg_acc), ``val_<key>`` for every evaluation key (VQA
accuracy per answer type and family, R@K both ways, acc@0.5 and mean IoU, ...),
``best_val_metric`` and ``best_epoch``; after the last epoch ``test_<key>``; with several
workers ``weight_sync_spread`` (max - min over ranks of a weight checksum: 0 when in sync).

CLI (one process): ``python -m mmsearch.recipes.train_derived CONFIG.yaml [key=value ...] [--fresh]``;
``jobs/train_derived.py`` runs the same recipe under Ray Train (workers, GPUs, DeepSpeed).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import torch.distributed as dist

from mmsearch.batch import MultimodalBatch
from mmsearch.config import ConfigError, dump_config, load_config, read_yaml
from mmsearch.tasks import make_objective
from mmsearch.io import atomic_write_json
from mmsearch.nas import ArchSpec, save_arch_spec
from mmsearch.recipes.context import LocalContext, RunContext
from mmsearch.recipes.search.recipe import open_search_data
from mmsearch.recipes.search.state import seed_everything
from mmsearch.data.task_data import TaskData, TaskDataConfig
from mmsearch.recipes.shared_data import open_shared
from mmsearch.machine import peak_rss_mib
from mmsearch.threads import torch_threads
from mmsearch.recipes.train_derived.config import TrainDerivedConfig, learning_rate, resolve_config
from mmsearch.recipes.train_derived.data import StridedShard, TrainShard
from mmsearch.recipes.train_derived.engine import (
    DerivedModel,
    EngineFactory,
    TrainEngine,
    build_model,
    local_engine,
    parameters_without_grad,
)
from mmsearch.recipes.train_derived.outputs import evaluate_split, write_predictions
from mmsearch.recipes.train_derived.state import ARCH_NAME, TrainProgress, restore_checkpoint, write_checkpoint

log = logging.getLogger(__name__)
RESULT_NAME = "train_result.json"
_RANK_SEED_STRIDE = 1_000_003  # per-rank dropout / negative-sampling streams after the shared init


@dataclass(frozen=True)
class TrainResult:
    spec: ArchSpec
    config: TrainDerivedConfig  # resolved
    metrics: dict[str, Any]  # the last epoch's report (with test_* metrics)
    history: list[dict[str, Any]]  # every epoch's report
    output_dir: Path
    files: dict[str, str]  # prediction and result files written by rank 0


def open_train_data(cfg: TaskDataConfig) -> TaskData:
    """The task data a config names: the precomputed stores, or generated data for ``root: synthetic``."""
    return open_search_data(cfg)


def train_derived(
    config: TrainDerivedConfig | Mapping[str, Any] | str | Path,
    context: RunContext | None = None,
    task_data: TaskData | None = None,
    *,
    train_shard: TrainShard | None = None,
    engine_factory: EngineFactory | None = None,
) -> TrainResult:
    """Train (or resume training) the configured architecture; see the module docstring.

    ``train_shard`` is this worker's share of the training samples (a Ray Train worker's shard);
    without one, several workers each take a strided share of the ``train`` part. ``engine_factory``
    builds the DDP / DeepSpeed engine (``mmsearch.orchestration.train_worker``); without one the
    model trains in this process.
    """
    cfg = config if isinstance(config, TrainDerivedConfig) else load_config(TrainDerivedConfig, config)
    context = context if context is not None else LocalContext(cfg.run_dir, keep_checkpoints=cfg.run.checkpoints_to_keep)
    with torch_threads(cfg.train.num_threads):  # for this run only
        return _train(cfg, context, task_data, train_shard, engine_factory)


def _train(cfg: TrainDerivedConfig, context: RunContext, task_data: TaskData | None, train_shard: TrainShard | None,
           engine_factory: EngineFactory | None) -> TrainResult:
    rank, world = context.rank, context.world_size
    out_dir = Path(context.output_dir)

    # 1. data and the resolved config
    # One opening per worker process when the context shares data across its runs (recipes/shared_data.py).
    data = task_data if task_data is not None else open_shared(context, ("train", cfg.data), lambda: open_train_data(cfg.data))
    cfg = resolve_config(cfg, data.info)
    spec = cfg.spec
    check_data(data, cfg, world)
    if rank == 0:
        dump_config(cfg, out_dir / "config.yaml")
        save_arch_spec(spec, out_dir / ARCH_NAME)

    # 2. model (identical initial weights on every rank) and objective
    seed_everything(cfg.seed)
    model = build_model(cfg, data.info)
    objective = make_objective(cfg.head)
    seed_everything(cfg.seed + _RANK_SEED_STRIDE * rank)
    shard = train_shard
    if shard is None and world > 1:
        shard = StridedShard(data, rank=rank, world_size=world, batch_size=cfg.train.batch_size, seed=cfg.seed,
                             drop_last=cfg.train.drop_last)

    # 3. engine: device, precision, optimiser, DDP / DeepSpeed
    find_unused = _find_unused_parameters(cfg, model, objective, data, world)
    parameters = sum(p.numel() for p in model.parameters())  # before ZeRO-3 partitions them
    engine = (engine_factory or local_engine)(model, cfg, find_unused)
    log.info("training %s (%d parameters) with %s", _arch_line(spec), parameters, engine.description)

    # 4. restore
    progress = TrainProgress()
    restored = context.restored_checkpoint()
    if restored is not None:
        progress = restore_checkpoint(Path(restored), config=cfg, engine=engine, rank=rank)
        log.info("resumed from %s after epoch %d", restored, progress.epoch)

    # 5. epochs
    files: dict[str, str] = {}
    resumed_from, first_epoch = progress.epoch, progress.epoch + 1
    for epoch in range(progress.epoch + 1, cfg.train.epochs + 1):
        last = epoch == cfg.train.epochs
        lr = learning_rate(cfg.optim, epoch)
        engine.set_lr(lr)
        metrics: dict[str, Any] = {"epoch": epoch, "lr": lr, "world_size": world, "resumed_from_epoch": resumed_from}
        metrics.update(_train_epoch(epoch, cfg, data, shard, engine, objective, progress, world))
        eval_start = time.perf_counter()
        val_metric = None
        if last or epoch % cfg.eval.every_epochs == 0:
            evaluated, new_files = _evaluate(cfg, data, engine, rank, final=last, out_dir=out_dir)
            metrics.update(evaluated)
            files.update(new_files)
            val_metric = metrics.get("val_metric")
        if world > 1 and not engine.gathers_parameters and dist.is_initialized():
            metrics["weight_sync_spread"] = _weight_spread(engine.model)
        metrics["eval_s"] = time.perf_counter() - eval_start
        metrics["epoch_s"] = metrics["train_s"] + metrics["eval_s"]
        progress.record(epoch, metrics, val_metric)
        metrics.update(best_epoch=progress.best_epoch, best_val_metric=progress.best_metric)
        log.info(_epoch_line(metrics, cfg))
        # Scratch under a dot-name: contexts that mirror output_dir skip it (report persists it).
        with tempfile.TemporaryDirectory(prefix=".train-checkpoint-", dir=out_dir) as scratch:
            write_checkpoint(Path(scratch), config=cfg, spec=spec, engine=engine, progress=progress, rank=rank)
            context.report(metrics, Path(scratch))

    # 6. artifacts
    if first_epoch > cfg.train.epochs:
        log.info("nothing to do: the checkpoint already finished epoch %d of %d", progress.epoch, cfg.train.epochs)
    return _finish(cfg, spec, progress, out_dir, files, rank=rank, write=first_epoch <= cfg.train.epochs)


def check_data(data: TaskData, cfg: TrainDerivedConfig, world: int) -> None:
    """Fail early when a part is too small for the configured batch size and number of workers."""
    needs = {"train": cfg.train.batch_size * world if cfg.train.drop_last else world, "val": 1}
    if cfg.eval.test:
        needs["test"] = 1
    for part, needed in needs.items():
        found = data.num_samples(part)  # type: ignore[arg-type]
        if found < needed:
            raise ValueError(f"the {part!r} part has {found} samples; training needs at least {needed} "
                             f"(train.batch_size={cfg.train.batch_size} per worker x {world} workers)")


def _find_unused_parameters(cfg: TrainDerivedConfig, model: DerivedModel, objective: Any, data: TaskData, world: int) -> bool:
    """DDP's find_unused_parameters: the config's choice, or (None) whether one probe step on a
    training batch leaves a parameter without gradient on any rank. One process and DeepSpeed
    (which tolerates parameters without gradients) need neither."""
    if world == 1 or cfg.deepspeed is not None or cfg.scaling.find_unused_parameters is not None:
        return bool(cfg.scaling.find_unused_parameters) and world > 1
    batch = next(iter(data.batches("train", batch_size=cfg.train.batch_size, epoch=0, seed=cfg.seed)))
    unused = parameters_without_grad(model, objective, batch)
    if unused:
        log.info("DDP: %d parameters get no gradient in a probe step (e.g. %s): find_unused_parameters=True", len(unused), unused[:3])
    found = torch.tensor([float(len(unused))])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(found, op=dist.ReduceOp.MAX)
    return bool(found.item() > 0)


def _batches(epoch: int, cfg: TrainDerivedConfig, data: TaskData, shard: TrainShard | None) -> Iterator[MultimodalBatch]:
    if shard is not None:
        return shard.epoch(epoch)
    return data.batches("train", batch_size=cfg.train.batch_size, epoch=epoch, seed=cfg.seed, shuffle=True,
                        drop_last=cfg.train.drop_last)


def _train_epoch(epoch: int, cfg: TrainDerivedConfig, data: TaskData, shard: TrainShard | None, engine: TrainEngine,
                 objective: Any, progress: TrainProgress, world: int) -> dict[str, Any]:
    """One pass over this worker's training samples; returns the epoch's training metrics (all ranks)."""
    model = engine.model
    model.train()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    step_times: list[float] = []
    samples, data_s, start = 0, 0.0, time.perf_counter()
    with contextlib.closing(iter(_batches(epoch, cfg, data, shard))) as batches:
        while True:
            fetch = time.perf_counter()
            batch = next(batches, None)
            fetched = time.perf_counter()
            data_s += fetched - fetch
            if batch is None:
                break
            batch = batch.to(engine.device, non_blocking=True)
            with engine.autocast():
                pairs = objective.prepare(model, batch, epoch - 1)  # ITM: mines negatives without grad
                loss, logs = objective.loss_from_outputs(engine.forward(pairs), pairs)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"epoch {epoch}, step {len(step_times) + 1}: training loss is {value}")
            grad_norm = engine.step(loss)
            if grad_norm is not None:
                logs = {**logs, "grad_norm": grad_norm}
            for key, val in logs.items():
                sums[key] = sums.get(key, 0.0) + float(val)
                counts[key] = counts.get(key, 0) + 1
            step_times.append(time.perf_counter() - fetched)
            samples += batch.batch_size
            if cfg.train.max_steps_per_epoch is not None and len(step_times) >= cfg.train.max_steps_per_epoch:
                break
    train_s = time.perf_counter() - start
    if not step_times:
        raise ValueError(f"epoch {epoch}: this worker got no training batch of {cfg.train.batch_size} samples")
    keys = sorted(sums)
    totals = _all_reduce_sum([*(sums[k] for k in keys), *(float(counts[k]) for k in keys), float(samples), float(len(step_times))], world)
    n = len(keys)
    means = {k: totals[i] / max(totals[n + i], 1.0) for i, k in enumerate(keys)}
    all_samples, all_steps = int(totals[2 * n]), int(totals[2 * n + 1] / world)
    progress.steps += all_steps
    progress.samples += all_samples
    out = {f"train_{k}" if k != "grad_norm" else k: v for k, v in means.items()}
    out.update(steps=progress.steps, samples=progress.samples, train_s=train_s, data_s=data_s,
               step_s=statistics.median(step_times), samples_per_s=all_samples / train_s if train_s > 0 else math.nan,
               peak_rss_mib=peak_rss_mib())  # this worker's (the reporting rank's) process
    stats = getattr(shard, "stats", None)  # where the shard's rows came from (Ray Data: blocks and rows received)
    if callable(stats):
        out.update(stats())
    return out


def _all_reduce_sum(values: list[float], world: int) -> list[float]:
    if world == 1 or not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


@torch.no_grad()
def _weight_spread(model: torch.nn.Module) -> float:
    """max - min over ranks of a weight checksum (0.0 when every rank holds the same weights)."""
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().cpu()
    both = torch.stack([checksum, -checksum])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return float(both[0] + both[1])


def _evaluate(cfg: TrainDerivedConfig, data: TaskData, engine: TrainEngine, rank: int, *, final: bool,
              out_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Validation (and after the last epoch: test and the prediction files). Rank 0 evaluates, or every
    rank when forward passes need all of them (ZeRO-3); the others return nothing."""
    if rank != 0 and not engine.gathers_parameters:
        return {}, {}
    metrics: dict[str, Any] = {}
    files: dict[str, str] = {}
    splits = ["val"] + (["test"] if final and cfg.eval.test else [])
    assert cfg.head is not None
    for split in splits:
        predictions = final and cfg.eval.predictions
        values, rows = evaluate_split(engine.model, cfg.head, data, split, batch_size=cfg.eval.batch_size, device=engine.device,
                                      autocast=engine.autocast(), max_samples=None if final else cfg.eval.max_samples,
                                      predictions=predictions)
        metrics.update({f"{split}_{key}": value for key, value in values.items()})
        if split == "val":
            metrics["val_metric"] = values[cfg.primary_metric]
        if predictions and rank == 0:
            files.update(write_predictions(out_dir, cfg.data.task, split, values, rows))
    return metrics, files


def _finish(cfg: TrainDerivedConfig, spec: ArchSpec, progress: TrainProgress, out_dir: Path, files: dict[str, str], *,
            rank: int, write: bool) -> TrainResult:
    """``train_result.json`` (rank 0, when this call trained) and the result."""
    final = progress.history[-1] if progress.history else {}
    if rank == 0 and write:
        summary = {
            "task": cfg.data.task,
            "arch": _arch_line(spec),
            "arch_source": spec.source,
            "epochs": progress.epoch,
            "metric": f"val_{cfg.primary_metric}",
            "final_val_metric": final.get("val_metric"),
            "best_val_metric": progress.best_metric,
            "best_epoch": progress.best_epoch,
            "test": {k[len("test_"):]: v for k, v in final.items() if k.startswith("test_")},
            "samples_per_s": final.get("samples_per_s"),
            "world_size": final.get("world_size"),
            "files": files,
            "history": progress.history,
        }
        files = {**files, "result": str(atomic_write_json(out_dir / RESULT_NAME, summary))}
    return TrainResult(spec, cfg, dict(final), list(progress.history), out_dir, files)


def _arch_line(spec: ArchSpec) -> str:
    if not isinstance(spec, ArchSpec):  # a fusion spec: its blocks
        return (spec.pattern or "fusion") + "[" + " ".join(b.label for b in spec.blocks) + "]"
    short = {"self_att": "SA", "guided_att": "GA", "rel_self_att": "RSA", "feed_forward": "FFN"}
    return "enc[" + " ".join(short.get(n, n) for n in spec.enc) + "] dec[" + " ".join(short.get(n, n) for n in spec.dec) + "]"


def _epoch_line(metrics: dict[str, Any], cfg: TrainDerivedConfig) -> str:
    parts = [f"epoch {metrics['epoch']}/{cfg.train.epochs}", f"lr {metrics['lr']:.2e}", f"loss {metrics.get('train_loss', math.nan):.4g}"]
    if "val_metric" in metrics:
        parts.append(f"val {cfg.primary_metric} {metrics['val_metric']:.2f}")
    if f"test_{cfg.primary_metric}" in metrics:
        parts.append(f"test {cfg.primary_metric} {metrics[f'test_{cfg.primary_metric}']:.2f}")
    parts.append(f"{metrics['samples_per_s']:.0f} samples/s, {metrics['epoch_s']:.1f} s")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmsearch.recipes.train_derived",
                                     description="Train a derived architecture in this process (jobs/train_derived.py: under Ray Train).")
    parser.add_argument("config", help="YAML config (configs/train/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. arch=mmnas_vqa train.epochs=2")
    parser.add_argument("--fresh", action="store_true", help="start over instead of resuming from the run directory's checkpoints")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        raw = read_yaml(args.config)
        cfg = load_config(TrainDerivedConfig, raw["recipe"] if "recipe" in raw else raw, args.overrides)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    result = train_derived(cfg, LocalContext(cfg.run_dir, resume=not args.fresh, keep_checkpoints=cfg.run.checkpoints_to_keep))
    metric = result.config.primary_metric
    print(f"val {metric} = {result.metrics.get('val_metric', math.nan):.2f}, test {metric} = "
          f"{result.metrics.get(f'test_{metric}', math.nan):.2f}; outputs in {result.output_dir}")
    return 0

