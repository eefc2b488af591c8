"""One-shot supernet architecture search (MMnas), as one function: ``run_search(config, context)``.

Reads top to bottom:

1. data: a :class:`~mmsearch.data.task_data.TaskData` (the precomputed stores, or the given
   one); the config's data-dependent sizes are resolved from it (:func:`resolve_config`);
2. model: the supernet, the task head and its objective, seeded from ``seed``;
3. optimisers: Adam on the network weights (+ head) and Adam on the architecture weights;
4. restore: everything from ``context.restored_checkpoint()`` (:mod:`.state`);
5. epochs (1-based): weight steps on the ``"weights"`` part in an order fixed by ``(seed,
   epoch)``; after warm-up one architecture step on the next batch of the disjoint ``"arch"``
   part after every ``arch_every`` weight steps; then the derived (argmax) architecture is
   evaluated on ``"val"`` with the supernet's weights, derived as a spec with per-block
   probabilities, logged, and reported with a checkpoint;
6. artifacts in ``context.output_dir``: ``config.yaml`` (resolved), ``arch_history.json``
   (updated every epoch), ``best_arch.json`` (best validation epoch after warm-up; updated when
   it changes), ``final_arch.json`` (last epoch) and ``search_result.json``; ``device.json`` (where
   it trains: device and precision) at the start.

Reported every epoch (floats unless noted; NaN where there is no value, e.g. ``a_*`` in warm-up):
``epoch`` (int), ``warmup`` (0/1), ``weight_lr``, ``weight_steps`` / ``arch_steps`` (int, totals),
``val_metric`` (the task's primary metric: vqa_acc, itm_rsum or vg_acc) and ``val_<key>`` for every
evaluation key (``val_vqa_acc_number``, ...), ``best_val_metric``, ``best_epoch`` (int),
``w_loss`` / ``a_loss`` and ``w_<log>`` / ``a_<log>`` (means of the step logs), ``arch`` (str),
``arch_changes`` (int), ``entropy_{enc,dec}_{mean,min}``, ``entropy_norm``, ``enc_<op>`` /
``dec_<op>`` (int op counts), ``w_step_s`` / ``a_step_s`` (median step times), ``train_s``,
``eval_s``, ``data_s`` (waiting for batches), ``epoch_s``, ``samples_per_s`` (weight-step
samples per second of training time), ``peak_rss_mib`` (the process's peak resident memory so far)
and, when a Tune trial's streamed region rows come through Ray Data, ``ray_data_blocks`` /
``ray_data_rows`` (ints, totals so far).

CLI: ``python -m mmsearch.recipes.search CONFIG.yaml [key=value ...]`` (a config file's
``recipe:`` section when it has one, else the whole file); it resumes from the checkpoints in
``output_dir`` when there are any (a new ``output_dir`` starts over). ``data.root=synthetic`` runs
on small generated data (:mod:`mmsearch.data.synthetic`), no precomputed store needed.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from mmsearch.batch import first_samples
from mmsearch.config import ConfigError, config_to_dict, dump_config, load_config, read_yaml
from mmsearch.tasks import build_head, evaluate, make_objective, task_entry
from mmsearch.io import atomic_write_json
from mmsearch.nas import (
    ArchSpec,
    FusionSpec,
    Supernet,
    arch_step,
    build_supernet,
    make_arch_optimizer,
    make_weight_optimizer,
    save_arch_spec,
    spec_from_dict,
    weight_step,
)
from mmsearch.recipes.context import WARMUP_KEY, LocalContext, RunContext
from mmsearch.recipes.precision import autocast, autocast_here, device_here
from mmsearch.recipes.search.config import SearchConfig, resolve_config, supernet_config, weight_lr
from mmsearch.recipes.search.report import StepLogMeans, arch_metrics, epoch_line
from mmsearch.recipes.search.state import (
    ArchBatches,
    SearchProgress,
    argmax_of,
    restore_checkpoint,
    seed_everything,
    write_checkpoint,
)
from mmsearch.recipes.shared_data import open_shared
from mmsearch.machine import peak_rss_mib
from mmsearch.threads import torch_threads
from mmsearch.data.task_data import TaskData, TaskDataConfig

log = logging.getLogger(__name__)
SYNTHETIC_ROOT = "synthetic"


@dataclass(frozen=True)
class SearchResult:
    final_spec: ArchSpec | FusionSpec  # derived at the last epoch (a FusionSpec for search_space: fusion)
    best_spec: ArchSpec | FusionSpec | None  # derived at the best validation epoch after warm-up
    best_epoch: int
    best_metric: float  # the task's primary validation metric (``metric``) at best_epoch
    metric: str
    history: list[dict[str, Any]]  # the reported metrics of every epoch
    output_dir: Path


def run_search(config: SearchConfig | Mapping[str, Any] | str | Path, context: RunContext | None = None,
               task_data: TaskData | None = None) -> SearchResult:
    """Run (or resume) a supernet search; see the module docstring."""
    cfg = config if isinstance(config, SearchConfig) else load_config(SearchConfig, config)
    context = context if context is not None else LocalContext(cfg.run_dir)
    if context.world_size > 1:
        raise NotImplementedError("run_search runs on one worker; the architecture weights are not synchronised across ranks")
    with torch_threads(cfg.search.num_threads):  # for this run only
        return _search(cfg, context, task_data)


def _search(cfg: SearchConfig, context: RunContext, task_data: TaskData | None) -> SearchResult:
    device = _device(cfg.search.device)
    dtype = autocast_here(cfg.search.precision, device)
    out_dir = Path(context.output_dir)

    # 1. data
    # One opening per worker process when the context shares data across its runs (recipes/shared_data.py).
    data = task_data if task_data is not None else open_shared(context, ("search", cfg.data), lambda: open_search_data(cfg.data))
    wrap = getattr(context, "wrap_task_data", None)  # a Tune trial: streamed region rows through Ray Data
    data = wrap(data) if callable(wrap) else data
    cfg = resolve_config(cfg, data.info)
    _check_parts(data, cfg)
    dump_config(cfg, out_dir / "config.yaml")
    ran_on = f"{device}, {'bf16 autocast' if dtype is not None else 'fp32'}"
    # Where this run trains, readable from storage at the first report (a Tune trial stopped by
    # ASHA or at its last epoch never reaches the end, where search_result.json is written).
    atomic_write_json(out_dir / "device.json", {"ran_on": ran_on, "torch": torch.__version__, "cuda": torch.version.cuda})

    # 2. model, head, objective
    seed_everything(cfg.seed)
    embedding_init = data.info.embedding_init if cfg.data.text_input == "tokens" else None
    supernet = build_supernet(supernet_config(cfg), None if embedding_init is None else torch.as_tensor(embedding_init).float()).to(device)
    head = build_head(cfg.head, cfg.model.hidden, layer_norm=cfg.model.layer_norm).to(device)
    objective = make_objective(cfg.head)

    # 3. optimisers
    s = cfg.search
    weight_opt = make_weight_optimizer(supernet, head, lr=s.weight_lr, betas=s.weight_betas, eps=s.weight_eps,
                                       weight_decay=s.weight_decay)
    arch_opt = make_arch_optimizer(supernet, lr=s.arch_lr, betas=s.arch_betas)
    log.info("search %s with %s: %d + %d blocks, H=%d, %.2fM network weights; samples: weights %d, arch %d, val %d; %s",
             cfg.data.task, s.strategy, cfg.model.enc_depth, cfg.model.dec_depth, cfg.model.hidden,
             sum(p.numel() for group in weight_opt.param_groups for p in group["params"]) / 1e6,
             data.num_samples("weights"), data.num_samples("arch"), data.num_samples("val"),
             ran_on)

    # 4. restore
    progress = SearchProgress(last_argmax=argmax_of(supernet.derive()))
    restored = context.restored_checkpoint()
    if restored is not None:
        progress = restore_checkpoint(Path(restored), config=cfg, supernet=supernet, head=head,
                                      weight_optimizer=weight_opt, arch_optimizer=arch_opt, device=device)
        log.info("resumed from %s after epoch %d", restored, progress.epoch)
    arch_batches = ArchBatches(data, s.arch_batch_size, cfg.seed, s.drop_last, progress.arch_position)

    # 5. epochs
    for epoch in range(progress.epoch + 1, s.epochs + 1):
        warmup = epoch <= s.warmup_epochs
        with autocast(device, dtype):  # steps run their backward inside too: same dtypes as their forward
            weight_steps, arch_steps, train = _train_epoch(epoch, warmup, cfg, data, arch_batches, supernet, head,
                                                           objective, weight_opt, arch_opt, device)
        eval_start = time.perf_counter()
        with autocast(device, dtype):
            val = evaluate_architecture(cfg, data, supernet, head, device)
        spec = supernet.derive(epoch=epoch, task=cfg.data.task).replace(config=config_to_dict(cfg))
        eval_s = time.perf_counter() - eval_start
        progress.weight_steps += weight_steps
        progress.arch_steps += arch_steps
        progress.arch_position = arch_batches.position
        improved = progress.consider(epoch, spec, val[cfg.primary_metric], searching=not warmup)
        metrics = {
            "epoch": epoch,
            WARMUP_KEY: int(warmup),  # not a selectable epoch: the summary and checkpoint retention skip it
            "weight_lr": weight_opt.param_groups[0]["lr"],
            "weight_steps": progress.weight_steps,
            "arch_steps": progress.arch_steps,
            "val_metric": val[cfg.primary_metric],
            **{f"val_{key}": value for key, value in val.items()},
            "best_val_metric": progress.best_metric,
            "best_epoch": progress.best_epoch,
            **train,
            **arch_metrics(spec, supernet.alpha_state(), progress.last_argmax),
            "eval_s": eval_s,
            "epoch_s": train["train_s"] + eval_s,
        }
        progress.record(epoch, spec, metrics)
        log.info(epoch_line(metrics, s.epochs, cfg.primary_metric, warmup))
        if context.rank == 0:  # kept current for reports on running searches
            atomic_write_json(out_dir / "arch_history.json", progress.arch_history)
            if improved:
                save_arch_spec(spec, out_dir / "best_arch.json")
        # Scratch under a dot-name: contexts that mirror output_dir skip it (it is persisted by report).
        with tempfile.TemporaryDirectory(prefix=".search-checkpoint-", dir=out_dir) as scratch:
            write_checkpoint(Path(scratch), config=cfg, supernet=supernet, head=head, weight_optimizer=weight_opt,
                             arch_optimizer=arch_opt, progress=progress, spec=spec, device=device)
            context.report(metrics, Path(scratch))

    # 6. artifacts
    return _finish(cfg, context, progress, ran_on=ran_on)


def open_search_data(cfg: TaskDataConfig) -> TaskData:
    """The task data a config names, as its task's entry opens it: the precomputed data set, or
    generated data for ``root: synthetic``."""
    return task_entry(cfg.task).data(cfg, synthetic=cfg.root == SYNTHETIC_ROOT)


def _train_epoch(epoch: int, warmup: bool, cfg: SearchConfig, data: TaskData, arch_batches: ArchBatches,
                 supernet: Supernet, head: torch.nn.Module, objective: Any, weight_opt: torch.optim.Optimizer,
                 arch_opt: torch.optim.Optimizer, device: torch.device) -> tuple[int, int, dict[str, float]]:
    """One pass over the weights part; an architecture step after every ``arch_every`` weight steps
    (counted within the epoch). Returns the numbers of weight and architecture steps and the figures."""
    s = cfg.search
    lr = weight_lr(s, epoch)
    for group in weight_opt.param_groups:
        group["lr"] = lr
    supernet.train()
    head.train()
    loss_fn = objective.loss_from_outputs
    run = lambda batch: supernet(batch, head)  # noqa: E731  (the argmax path; ITM mines negatives with it)
    w_logs, a_logs, w_times, a_times = StepLogMeans(), StepLogMeans(), [], []
    samples, data_s, start = 0, 0.0, time.perf_counter()
    batches = data.batches("weights", batch_size=s.batch_size, epoch=epoch, seed=cfg.seed, shuffle=True, drop_last=s.drop_last)
    iterator, step = iter(batches), 0
    while True:
        fetch = time.perf_counter()
        batch = next(iterator, None)
        fetched = time.perf_counter()
        data_s += fetched - fetch
        if batch is None:
            break
        step += 1
        batch = batch.to(device, non_blocking=True)
        pairs = objective.prepare(run, batch, epoch - 1)
        w_logs.add(weight_step(supernet, head, loss_fn, pairs, weight_opt, clip=s.grad_clip, warmup=warmup))
        w_times.append(time.perf_counter() - fetched)
        samples += batch.batch_size
        if not warmup and step % s.arch_every == 0:
            fetch = time.perf_counter()
            arch_batch = arch_batches.next().to(device, non_blocking=True)
            fetched = time.perf_counter()
            data_s += fetched - fetch
            a_logs.add(arch_step(supernet, head, loss_fn, objective.prepare(run, arch_batch, epoch - 1), arch_opt))
            a_times.append(time.perf_counter() - fetched)
        if s.max_steps_per_epoch is not None and step >= s.max_steps_per_epoch:
            break
    train_s = time.perf_counter() - start
    if not w_times:
        raise ValueError(f"epoch {epoch}: the weights part gave no batch of {s.batch_size} samples")
    return len(w_times), len(a_times), {
        **w_logs.means("w_"),
        **a_logs.means("a_", empty_keys=("loss",)),
        "w_step_s": statistics.median(w_times),
        "a_step_s": statistics.median(a_times) if a_times else float("nan"),
        "train_s": train_s,
        "data_s": data_s,
        "samples_per_s": samples / train_s if train_s > 0 else float("nan"),
        "peak_rss_mib": peak_rss_mib(),  # the trial process's peak so far
        **(data.stats() if callable(getattr(data, "stats", None)) else {}),  # Ray Data: blocks / rows received
    }


def evaluate_architecture(cfg: SearchConfig, data: TaskData, supernet: Supernet, head: torch.nn.Module,
                          device: torch.device) -> dict[str, float]:
    """The task's validation metrics of the current argmax architecture with the supernet's weights."""
    modes = supernet.training, head.training
    supernet.eval()
    head.eval()
    try:
        batches = data.batches("val", batch_size=cfg.eval.batch_size, shuffle=False)
        with torch.inference_mode():
            on_device = (batch.to(device) for batch in first_samples(batches, cfg.eval.max_samples))
            return evaluate(cfg.head, lambda batch: supernet(batch, head), on_device)
    finally:
        supernet.train(modes[0])
        head.train(modes[1])


def _check_parts(data: TaskData, cfg: SearchConfig) -> None:
    s = cfg.search
    needs = {"weights": s.batch_size if s.drop_last else 1, "arch": s.arch_batch_size if s.drop_last else 1, "val": 1}
    for part, needed in needs.items():
        found = data.num_samples(part)  # type: ignore[arg-type]
        if found < needed:
            raise ValueError(f"the {part!r} part has {found} samples; the search needs at least {needed} "
                             f"(batch sizes: search.batch_size={s.batch_size}, search.arch_batch_size={s.arch_batch_size})")


def _device(name: str) -> torch.device:
    return device_here(name, what="search.device")


def _finish(cfg: SearchConfig, context: RunContext, progress: SearchProgress, ran_on: str) -> SearchResult:
    """Write the final artifacts (rank 0) and return the result (``ran_on``: the device and precision)."""
    out_dir = Path(context.output_dir)
    last = progress.arch_history[f"epoch{progress.epoch}"]
    final_spec = spec_from_dict({**last, "config": config_to_dict(cfg)})
    best_spec = spec_from_dict(progress.best_spec) if progress.best_spec is not None else None
    if context.rank == 0:
        atomic_write_json(out_dir / "arch_history.json", progress.arch_history)
        save_arch_spec(final_spec, out_dir / "final_arch.json")
        if best_spec is not None:
            save_arch_spec(best_spec, out_dir / "best_arch.json")
        atomic_write_json(out_dir / "search_result.json", {
            "task": cfg.data.task,
            "metric": f"val_{cfg.primary_metric}",
            "epochs": progress.epoch,
            "best_epoch": progress.best_epoch,
            "best_val_metric": progress.best_metric,
            "best_arch": progress.history[progress.best_epoch - 1]["arch"] if progress.best_epoch else None,
            "final_arch": progress.history[-1]["arch"],
            "final_val_metric": progress.history[-1]["val_metric"],
            "ran_on": ran_on,  # where the (last) run of this search trained: "cuda:0, bf16 autocast", "cpu, fp32"
        })
    return SearchResult(final_spec, best_spec, progress.best_epoch, progress.best_metric, cfg.primary_metric,
                        list(progress.history), out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmsearch.recipes.search",
        description="Run a one-shot supernet search, or resume it from the checkpoints in its output_dir "
        "(to start over, use a new output_dir).",
    )
    parser.add_argument("config", help="YAML config (its 'recipe:' section when it has one)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. search.epochs=4 model.hidden=64")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        raw = read_yaml(args.config)
        cfg = load_config(SearchConfig, raw["recipe"] if "recipe" in raw else raw, args.overrides)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    result = run_search(cfg, LocalContext(cfg.run_dir))
    print(f"best val_{result.metric} = {result.best_metric:.2f} at epoch {result.best_epoch}; "
          f"architectures in {result.output_dir} (best_arch.json, final_arch.json, arch_history.json)")
    return 0

