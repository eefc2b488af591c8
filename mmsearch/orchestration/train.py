"""Train a derived architecture with Ray Train: ``fit_derived(config)`` (V2 API), and the search handoff.

:func:`fit_derived` checks everything it can on the driver before any worker starts
(:func:`prepare_run`, without Ray: the architecture, the data and its sizes, the DeepSpeed config,
the storage, what a resubmitted run resumes from (:mod:`.train_resume`); then the cluster's
resources), then runs ``TorchTrainer`` with

* ``ScalingConfig(num_workers, use_gpu, resources_per_worker)`` from ``scaling`` and
  ``TorchConfig(backend="gloo")`` on CPUs (NCCL on GPUs);
* no trainer dataset: every worker takes its share of each epoch's ``(seed, epoch)`` permutation
  itself, and streamed region rows reach it through a Ray Data dataset of its own per epoch
  (:mod:`.train_rows`, which says why not Ray Train's split);
* ``RunConfig(name, storage_path, FailureConfig(max_failures), CheckpointConfig(num_to_keep))``:
  after a worker failure the worker group restarts from the latest checkpoint, and a job
  resubmitted with the same run name and storage resumes from it (Ray Train V2 reads the run's
  checkpoint records back from storage).

Run layout in storage: ``<storage_path>/<run name>/`` holds Ray Train's checkpoints
(``checkpoint_*/``, one per epoch, the ranks' directories merged) and ``outputs/`` (resolved
``config.yaml``, ``arch.json``, ``predictions/``, ``train_result.json``).

Under Ray Tune use :func:`tune_trainable` (a function trainable that drives the Train run and
forwards its reports with ``TuneReportCallback``; give it ``{"cpu": 0.01}``), never
``Tuner(trainer)``. :func:`train_best_architecture` is the search -> training handoff.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import ray
import ray.train
import torch
from ray.train.torch import TorchConfig, TorchTrainer

from mmsearch.config import config_to_dict, load_config, replace, validate_config
from mmsearch.nas import ArchSpec
from mmsearch import storage
from mmsearch.orchestration import quiet
from mmsearch.orchestration.cluster import connect
from mmsearch.orchestration.ray_data_stats import create_ray_data_stats_actor_here
from mmsearch.orchestration.train_resume import ResumePoint, find_resume_point
from mmsearch.orchestration.train_worker import train_loop_per_worker
from mmsearch.data.task_data import TaskData
from mmsearch.recipes.entry import check_finite
from mmsearch.recipes.train_derived.recipe import check_data, open_train_data
from mmsearch.recipes.train_derived.arch import search_outcome, spec_width_differences
from mmsearch.recipes.train_derived.config import ScalingSettings, TrainDerivedConfig, default_run_name, resolve_config
from mmsearch.recipes.train_derived.engine import build_model

log = logging.getLogger(__name__)
OUTPUTS = "outputs"
HANDOFF_FILE = "search_vs_retrained.json"
TaskDataFactory = Callable[[], TaskData]


class TrainSetupError(RuntimeError):
    """The run cannot start as configured (checked on the driver, before any worker starts)."""


@dataclasses.dataclass(frozen=True)
class PreparedRun:
    config: TrainDerivedConfig  # resolved: architecture, sizes and DeepSpeed config inline
    name: str
    location: storage.StorageLocation  # <storage_path>/<name>
    train_samples: int
    resume: ResumePoint = ResumePoint(None)  # what a resubmitted run resumes from

    @property
    def outputs(self) -> storage.StorageLocation:
        return self.location.child(OUTPUTS)


@dataclasses.dataclass(frozen=True)
class TrainRunResult:
    name: str
    path: str  # the run directory in storage (checkpoints)
    outputs: str  # its outputs/ directory (predictions, train_result.json)
    metrics: dict[str, Any]  # rank 0's last report (with test_* after the final epoch)
    checkpoint: str | None  # the latest checkpoint
    config: TrainDerivedConfig
    spec: ArchSpec

    def describe(self) -> str:
        metric = self.config.primary_metric
        parts = [f"run {self.name}: epoch {self.metrics.get('epoch')}"]
        for key in ("val_metric", f"test_{metric}"):
            if key in self.metrics:
                parts.append(f"{key.replace('val_metric', 'val_' + metric)} {self.metrics[key]:.2f}")
        return ", ".join(parts) + f"\n  checkpoints: {self.path}\n  outputs:     {self.outputs}"


def _as_config(config: TrainDerivedConfig | Mapping[str, Any] | str | Path, overrides: Iterable[str] = ()) -> TrainDerivedConfig:
    if isinstance(config, TrainDerivedConfig):
        return load_config(TrainDerivedConfig, config_to_dict(config), overrides) if overrides else config
    return load_config(TrainDerivedConfig, dict(config) if isinstance(config, Mapping) else config, overrides)


def prepare_run(config: TrainDerivedConfig | Mapping[str, Any] | str | Path, *,
                task_data_factory: TaskDataFactory | None = None) -> PreparedRun:
    """Resolve and check a run on the driver, without Ray: architecture (a missing file or an
    unknown op fails here), data and sizes, the model (built on the meta device, nothing
    allocated), DeepSpeed config, the storage (:func:`storage.preflight`), and, for a run that
    exists, its newest intact checkpoint and that the config did not change (:mod:`.train_resume`)."""
    cfg = _as_config(config)
    name = cfg.run.name or default_run_name(cfg)
    data = task_data_factory() if task_data_factory is not None else open_train_data(cfg.data)
    cfg = resolve_config(cfg, data.info)
    for line in spec_width_differences(cfg.spec, cfg.model):
        log.warning("%s", line)
    check_data(data, cfg, cfg.scaling.num_workers)
    for store in getattr(data, "stores", {}).values():  # NaN / inf in the latents: found here, not in every worker
        check_finite(store)
    with torch.device("meta"):
        build_model(cfg, dataclasses.replace(data.info, embedding_init=None))
    location = storage.resolve_storage(cfg.run.storage_path, cfg.run.s3_endpoint_url).child(name)
    storage.preflight(location)
    resume = find_resume_point(location, cfg)
    return PreparedRun(cfg, name, location, data.num_samples("train"), resume)


def rescale(prepared: PreparedRun, scaling: ScalingSettings) -> PreparedRun:
    """``prepared`` with other Ray Train workers (fitted to the cluster once connected); the
    train part must still fill one batch per worker."""
    cfg = dataclasses.replace(prepared.config, scaling=scaling)  # validated once; the scaling is checked by its class
    needed = cfg.train.batch_size * scaling.num_workers if cfg.train.drop_last else scaling.num_workers
    if prepared.train_samples < needed:
        raise TrainSetupError(f"the 'train' part has {prepared.train_samples} samples; training needs at least {needed} "
                              f"(train.batch_size={cfg.train.batch_size} per worker x {scaling.num_workers} workers)")
    return dataclasses.replace(prepared, config=cfg)


def check_resources(scaling: ScalingSettings, cluster: Mapping[str, float], *, strict: bool) -> None:
    """Workers must fit the cluster: on a local Ray (``strict``) fail at once, on a cluster warn
    (an autoscaler may add nodes); Ray Train would otherwise wait for them forever."""
    need_cpu = scaling.num_workers * scaling.cpus_per_worker
    need_gpu = scaling.num_workers * scaling.gpus_per_worker if scaling.use_gpu else 0.0
    have_cpu, have_gpu = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    problems = []
    if need_cpu > have_cpu + 1e-9:
        problems.append(f"{scaling.num_workers} workers x {scaling.cpus_per_worker:g} CPUs = {need_cpu:g} CPUs, the cluster has {have_cpu:g}")
    if need_gpu > have_gpu + 1e-9:
        problems.append(f"{scaling.num_workers} workers x {scaling.gpus_per_worker:g} GPUs = {need_gpu:g} GPUs, the cluster has {have_gpu:g}")
    if problems:
        message = "training does not fit: " + "; ".join(problems) + " (lower scaling.num_workers / cpus_per_worker, or add nodes)"
        if strict:
            raise TrainSetupError(message)
        log.warning("%s; waiting for the autoscaler", message)


def run_config(prepared: PreparedRun, callbacks: Iterable[Any] = ()) -> ray.train.RunConfig:
    cfg = prepared.config
    base = storage.resolve_storage(cfg.run.storage_path, cfg.run.s3_endpoint_url)  # the run name is RunConfig's
    return ray.train.RunConfig(
        name=prepared.name,
        storage_path=base.fs_path if base.is_s3 else base.uri,
        storage_filesystem=base.filesystem() if base.is_s3 else None,
        failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.run.checkpoints_to_keep),
        callbacks=list(callbacks),
        logging_config=ray.train.LoggingConfig(log_level=quiet.train_log_level()),  # a quiet job: no per-epoch INFO lines
    )


def build_trainer(prepared: PreparedRun, *, task_data_factory: TaskDataFactory | None = None,
                  callbacks: Iterable[Any] = ()) -> TorchTrainer:
    cfg, s = prepared.config, prepared.config.scaling
    resources: dict[str, float] = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    loop_config = {"config": config_to_dict(cfg), "outputs": prepared.outputs, "task_data_factory": task_data_factory,
                   "resume": prepared.resume.loop_config(prepared.location)}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
        run_config=run_config(prepared, callbacks),
    )


def fit_derived(config: TrainDerivedConfig | Mapping[str, Any] | str | Path, *, overrides: Iterable[str] = (),
                task_data_factory: TaskDataFactory | None = None, callbacks: Iterable[Any] = ()) -> TrainRunResult:
    """Train (or resume) the configured architecture with Ray Train; see the module docstring.

    ``task_data_factory``: a picklable callable returning the ``TaskData`` (tests, custom data);
    default: each worker opens the config's precomputed data set.
    """
    prepared = prepare_run(_as_config(config, overrides), task_data_factory=task_data_factory)
    return run_prepared(prepared, task_data_factory=task_data_factory, callbacks=callbacks)


def run_prepared(prepared: PreparedRun, *, task_data_factory: TaskDataFactory | None = None,
                 callbacks: Iterable[Any] = ()) -> TrainRunResult:
    """Run a :func:`prepare_run` result with Ray Train (joins or starts Ray if needed)."""
    info = connect() if not ray.is_initialized() else None
    strict = info is not None and info.mode == "local"
    check_resources(prepared.config.scaling, ray.cluster_resources(), strict=strict)
    if prepared.config.data.regions == "stream" and ray.util.get_current_placement_group() is None:
        # by this process, not by a worker, whose run's end would take it down (.ray_data_stats);
        # nor here inside a trial's placement group (tune_trainable): the experiment's driver decides
        create_ray_data_stats_actor_here()
    print(f"Ray Train run {prepared.name}: {prepared.config.scaling.num_workers} worker(s), "
          f"{'DeepSpeed' if prepared.config.deepspeed else 'DDP'}; checkpoints in {prepared.location}, "
          f"outputs in {prepared.outputs}", flush=True)
    result = build_trainer(prepared, task_data_factory=task_data_factory, callbacks=callbacks).fit()
    if result.error is not None:
        raise result.error
    return TrainRunResult(
        name=prepared.name,
        path=prepared.location.uri,
        outputs=prepared.outputs.uri,
        metrics=dict(result.metrics or {}),
        checkpoint=_checkpoint_uri(prepared.location, result.checkpoint),
        config=prepared.config,
        spec=prepared.config.spec,
    )


def _checkpoint_uri(run: storage.StorageLocation, checkpoint: ray.train.Checkpoint | None) -> str | None:
    if checkpoint is None:
        return None
    return run.child(Path(checkpoint.path).name).uri


def tune_trainable(base_config: Mapping[str, Any], *, task_data_factory: TaskDataFactory | None = None) -> Callable[[dict[str, Any]], None]:
    """A Ray Tune function trainable that drives one Ray Train run per trial (the Train V2 pattern).

    The trial's sampled parameters (dotted keys) are merged into ``base_config``; the Train run is
    named after the trial, so a restarted trial resumes its own run. Reports reach Tune through
    ``TuneReportCallback``. Give the trainable almost no resources (``tune.with_resources(fn,
    {"cpu": 0.01})``; 0 is rejected): the workers hold them, and trials x (0.01 + workers x CPUs
    per worker) must fit the cluster or worker groups wait forever.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from mmsearch.orchestration.tune_context import merge_trial_params

    base = dict(base_config)

    def drive_train_run(params: dict[str, Any]) -> None:
        cfg = validate_config(TrainDerivedConfig, merge_trial_params(base, params), origin=f"trial params {params}")
        context = tune.get_context()
        name = f"{context.get_experiment_name()}_{context.get_trial_id()}"
        cfg = replace(cfg, run=replace(cfg.run, name=name))
        fit_derived(cfg, task_data_factory=task_data_factory, callbacks=[TuneReportCallback()])

    return drive_train_run


def train_best_architecture(search: str | Path | ArchSpec, train_config: TrainDerivedConfig | Mapping[str, Any] | str | Path, *,
                            overrides: Iterable[str] = (), task_data_factory: TaskDataFactory | None = None) -> dict[str, Any]:
    """The search -> training handoff: retrain the architecture a finished search picked.

    ``search`` is the search's output directory or Tune experiment directory (its best
    architecture is trained), a spec file, or an ``ArchSpec``. Returns (and writes to the run's
    ``outputs/search_vs_retrained.json``) the searched and retrained figures side by side:
    ``searched`` is the search's validation metric of that architecture with the supernet's shared
    weights, ``retrained_val`` / ``retrained_test`` the metrics after training it from scratch.
    """
    arch: Any = search.to_dict() if isinstance(search, ArchSpec) else str(search)
    cfg = _as_config(train_config, [*overrides])
    cfg = replace(cfg, arch=arch)
    result = fit_derived(cfg, task_data_factory=task_data_factory)
    metric = result.config.primary_metric
    comparison = {
        "task": result.config.data.task,
        "metric": metric,
        "arch": {"enc": list(result.spec.enc), "dec": list(result.spec.dec), "source": result.spec.source},
        "searched": search_outcome(arch),
        "retrained_val": result.metrics.get("val_metric"),
        "retrained_test": result.metrics.get(f"test_{metric}"),
        "retrained_best_val": result.metrics.get("best_val_metric"),
        "epochs": result.metrics.get("epoch"),
        "run": result.path,
        "outputs": result.outputs,
    }
    outputs = storage.StorageLocation(uri=result.outputs, endpoint_url=cfg.run.s3_endpoint_url)
    storage.write_bytes(outputs.child(HANDOFF_FILE), (json.dumps(comparison, indent=2, default=float) + "\n").encode())
    return comparison


__all__ = [
    "HANDOFF_FILE",
    "PreparedRun",
    "TrainRunResult",
    "TrainSetupError",
    "build_trainer",
    "check_resources",
    "fit_derived",
    "prepare_run",
    "rescale",
    "run_prepared",
    "train_best_architecture",
    "tune_trainable",
]
