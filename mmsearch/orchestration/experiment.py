"""Run a recipe many times under Ray Tune: validate, preflight, start or resume, summarise.

:func:`run_experiment` is idempotent: called again with the same storage and experiment name it
resumes the experiment (``Tuner.restore`` with unfinished and errored trials resumed from their
last checkpoints, finished trials left alone, ASHA's rung records reloaded) instead of starting
over. Everything that can be checked is checked before Ray runs a trial: the base config, the
search space against the recipe's config class, the ASHA ladder against the recipe's epochs,
the storage (write/read/delete of a marker), and that the cluster can run at least one trial.

A job does these steps once each: it validates its recipe config at its edge and passes the
frozen config to :func:`plan_experiment` (a dict is validated there, once), runs the storage
preflight and :func:`check_resume`, and then :func:`run_plan`, which runs the plan as it is.
:func:`run_experiment` is all of it in one call.

Trials get ``cpus_per_trial``/``gpus_per_trial`` (fractional GPUs run several trials per GPU);
as many run at once as the cluster holds, minus ``reserve_cpus_for_data`` CPUs kept free for Ray
Data's tasks (whose statistics actor the driver creates first where trials may run datasets:
:mod:`.ray_data_stats`). Trials with GPUs, or on a cluster, each run in a fresh actor; CPU trials
on one machine reuse finished ones' processes (``tune.reuse_actors``, on by default; fresh: ~4 s each).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from typing import Any, Callable, Iterable

import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler

from mmsearch.config import ConfigError, config_to_dict, validate_config
from mmsearch import storage
from mmsearch.orchestration import asha_state
from mmsearch.orchestration.asha import RungLadder, validate_scheduler
from mmsearch.orchestration.checkpoints import CheckpointFallback, ResultFilesToStorage
from mmsearch.orchestration.cluster import alive_nodes, connect, on_one_machine
from mmsearch.orchestration.credentials import keep_credentials_out_of_runtime_envs
from mmsearch.orchestration.metrics import TrialMetricsCallback
from mmsearch.orchestration.ray_data_stats import create_ray_data_stats_actor_here, trials_may_run_datasets
from mmsearch.orchestration.resource_plan import ResourcePlan, cpu_fit, plan_trial_resources, reuse_actors
from mmsearch.orchestration.search_space import SearchSpace, build_searcher, parse_search_space
from mmsearch.orchestration.settings import ResourceSettings, TuneSettings
from mmsearch.orchestration.stop_signal import sigterm_stops_tune
from mmsearch.orchestration.summary import ExperimentSummary, summarize_analysis, write_summary
from mmsearch.orchestration.tune_context import CHECKPOINT_SCORE, as_tune_trainable
from mmsearch.recipes.resolve import config_differences

log = logging.getLogger(__name__)

SPEC_FILE = "mmsearch_state/experiment_spec.json"  # beside the ASHA state (see asha_state.STATE_FILE)


class ExperimentError(RuntimeError):
    """The experiment cannot start or resume as configured; the message says why."""


@dataclasses.dataclass(frozen=True)
class ExperimentOutcome:
    results: tune.ResultGrid
    summary: ExperimentSummary
    location: storage.StorageLocation  # the experiment directory
    resumed: bool

    def best_result(self) -> Any:
        """Ray's ``Result`` of the summary's best trial (:mod:`.summary`). Ray's own
        ``get_best_result(metric, mode, scope="all")`` names the same trial, except in a search whose
        warm-up epoch scored best: Ray cannot leave those epochs out."""
        best = self.summary.best_trial
        if best is None:
            return None
        return next((r for r in self.results if (r.metrics or {}).get("trial_id") == best.trial_id), None)


@dataclasses.dataclass(frozen=True)
class ExperimentPlan:
    """What :func:`run_experiment` will run, computed (and validated) before Ray is involved."""

    recipe: Callable[..., Any]  # the trial function
    config_cls: type
    base: Any  # the validated base config (an instance of config_cls); trials add their sampled values
    settings: TuneSettings
    space: SearchSpace
    ladder: RungLadder | None  # None for FIFO
    max_t: int
    location: storage.StorageLocation
    spec: dict[str, Any]  # what must not change between a run and its resume

    @property
    def num_trials(self) -> int:
        return self.space.num_trials(self.settings.num_samples)


def experiment_location(settings: TuneSettings) -> storage.StorageLocation:
    root = storage.resolve_storage(settings.storage_path, settings.s3_endpoint_url)
    return root.child(settings.experiment_name)


def plan_experiment(
    recipe: Callable[..., Any],
    config_cls: type,
    base_config: Any,
    settings: TuneSettings,
    *,
    epochs_key: str,
) -> ExperimentPlan:
    """Validate everything that can be checked without Ray; raises ConfigError/ValueError subclasses.

    ``base_config`` is the recipe's validated config (an instance of ``config_cls``, used as it
    is) or its data (a mapping, validated here)."""
    base_cfg = base_config if isinstance(base_config, config_cls) else validate_config(config_cls, base_config, origin="base config")
    if epochs_key in settings.search_space:
        raise ConfigError(f"search space: {epochs_key} is the fidelity budget (ASHA's max_t); it cannot be tuned")
    recipe_epochs = _get_dotted(base_cfg, epochs_key)
    if isinstance(recipe_epochs, bool) or not isinstance(recipe_epochs, int):
        raise ConfigError(f"epochs_key {epochs_key!r} must name an integer field of {config_cls.__name__}")
    ladder = validate_scheduler(settings.scheduler, recipe_epochs=recipe_epochs, metric=settings.metric, mode=settings.mode)
    space = parse_search_space(settings.search_space, config_cls, config_to_dict(base_cfg))
    if settings.searcher == "optuna":
        build_searcher("optuna", space, metric=settings.metric, mode=settings.mode, max_concurrent=1, seed=None)
    spec = {
        "recipe": getattr(recipe, "__qualname__", repr(recipe)),
        "config_class": config_cls.__qualname__,
        "base_config": config_to_dict(base_cfg),
        "search_space": settings.search_space,
        "num_samples": settings.num_samples,
        "searcher": settings.searcher,
        "searcher_seed": settings.searcher_seed,
        "metric": settings.metric,
        "mode": settings.mode,
        "scheduler": dataclasses.asdict(settings.scheduler),
        "max_t": recipe_epochs,
        "rungs": list(ladder.rungs) if ladder else [],
    }
    return ExperimentPlan(
        recipe=recipe,
        config_cls=config_cls,
        base=base_cfg,
        settings=settings,
        space=space,
        ladder=ladder,
        max_t=recipe_epochs,
        location=experiment_location(settings),
        spec=json.loads(json.dumps(spec, default=str)),
    )


def derive_max_concurrent_trials(resources: ResourceSettings, cluster: dict[str, float]) -> int:
    """Trials that fit at once: CPUs (minus the Ray Data reserve) and GPUs per trial, or the explicit cap."""
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    fit = cpu_fit(resources, cluster)
    if resources.gpus_per_trial:
        fit = min(fit, math.floor(gpus / resources.gpus_per_trial + 1e-9))
    if resources.max_concurrent_trials is not None:
        if resources.max_concurrent_trials > fit:
            log.warning(
                "resources.max_concurrent_trials=%d is more than fit on the cluster now (%d); "
                "the extra trials wait for resources (or the autoscaler)",
                resources.max_concurrent_trials,
                max(fit, 0),
            )
        return resources.max_concurrent_trials
    if fit < 1:
        raise ExperimentError(
            f"no trial fits on this cluster ({cpus:g} CPUs, {gpus:g} GPUs): a trial needs "
            f"{resources.cpus_per_trial:g} CPUs and {resources.gpus_per_trial or 0:g} GPUs, and "
            f"{resources.reserve_cpus_for_data:g} CPUs are reserved for Ray Data; lower cpus_per_trial "
            "or reserve_cpus_for_data, or add nodes"
        )
    return fit


def run_experiment(
    recipe: Callable[..., Any],
    config_cls: type,
    base_config: Any,
    settings: TuneSettings,
    *,
    epochs_key: str,
    callbacks: Iterable[tune.Callback] = (),
    verbose: int = 1,
) -> ExperimentOutcome:
    """Run (or resume) the experiment named ``settings.experiment_name`` and summarise it.

    ``epochs_key`` is the dotted config key holding the recipe's number of epochs (ASHA's
    ``max_t``). ``callbacks`` are stored with a new experiment and reused when it resumes
    (Ray pickles the run config into the experiment directory).
    """
    plan = plan_experiment(recipe, config_cls, base_config, settings, epochs_key=epochs_key)
    storage.preflight(plan.location)
    print(f"Results go to {plan.location.uri}", flush=True)  # the jobs say it themselves, before Ray starts
    return run_plan(plan, callbacks=callbacks, verbose=verbose)


def run_plan(plan: ExperimentPlan, *, callbacks: Iterable[tune.Callback] = (), verbose: int = 1) -> ExperimentOutcome:
    """Run (or resume) a planned experiment whose storage passed :func:`storage.preflight`; nothing
    is validated or checked again (see :func:`run_experiment`)."""
    location, settings = plan.location, plan.settings
    if not ray.is_initialized():
        connect()
    keep_credentials_out_of_runtime_envs()  # also when the caller started Ray itself
    if trials_may_run_datasets(plan.recipe, plan.base, plan.space.param_space):
        create_ray_data_stats_actor_here()  # not by a trial, whose end would take it down
    cluster = ray.cluster_resources()
    placement = plan_trial_resources(settings.resources, cluster, num_trials=plan.num_trials)
    concurrency = derive_max_concurrent_trials(
        dataclasses.replace(settings.resources, gpus_per_trial=placement.gpus_per_trial), cluster)
    _warn_about_layout(plan, concurrency, location)

    trainable = tune.with_resources(as_tune_trainable(plan.recipe, plan.base, plan.config_cls, experiment=location,
                                                      score_metric=settings.metric),
                                    placement.tune_resources())
    fs = location.filesystem() if location.is_s3 else None
    exp_path = location.fs_path if location.is_s3 else location.uri

    resumed = tune.Tuner.can_restore(exp_path, storage_filesystem=fs)
    if resumed:
        _check_same_experiment(plan, location)
        print(f"Resuming experiment {location.uri} (unfinished and errored trials continue from their checkpoints)")
        tuner = tune.Tuner.restore(
            exp_path, trainable, resume_unfinished=True, resume_errored=True, storage_filesystem=fs
        )
        _ensure_resume_callback(tuner)
    else:
        storage.delete_file(location.child(asha_state.STATE_FILE))  # stale, from an experiment that never started
        storage.write_bytes(location.child(SPEC_FILE), (json.dumps(plan.spec, indent=2) + "\n").encode())
        tuner = _new_tuner(plan, trainable, concurrency, fs, list(callbacks), verbose,
                           reuse_actors=reuse_actors(settings, placement.gpus_per_trial, one_machine=on_one_machine()))

    print(_plan_text(plan, concurrency, placement), flush=True)
    with sigterm_stops_tune():  # `ray job stop` saves the experiment state as Ctrl+C does
        results = tuner.fit()
    summary = summarize_experiment(location)
    write_summary(summary, location)
    print(summary.table())
    print(f"Results: {location.uri} (summary: {location.child('experiment_summary.json').uri})", flush=True)
    return ExperimentOutcome(results=results, summary=summary, location=location, resumed=resumed)


def _new_tuner(
    plan: ExperimentPlan, trainable: Any, concurrency: int, fs: Any, callbacks: list, verbose: int, *, reuse_actors: bool
) -> tune.Tuner:
    s = plan.settings
    scheduler: Any
    if plan.ladder is None:
        scheduler = FIFOScheduler()
    else:
        scheduler = asha_state.PersistentASHAScheduler(
            state=plan.location.child(asha_state.STATE_FILE),
            metric=s.metric,
            mode=s.mode,
            max_t=plan.max_t,
            grace_period=s.scheduler.grace_period,
            reduction_factor=s.scheduler.reduction_factor,
            brackets=s.scheduler.brackets,
        )
    searcher = build_searcher(
        s.searcher, plan.space, metric=s.metric, mode=s.mode, max_concurrent=concurrency, seed=s.searcher_seed
    )
    root = storage.resolve_storage(s.storage_path, s.s3_endpoint_url)
    metrics = TrialMetricsCallback(s.experiment_name, metric=s.metric, mode=s.mode, max_t=plan.max_t, storage=root.uri,
                                   scheduler=scheduler)
    return tune.Tuner(
        trainable,
        param_space=plan.space.param_space,
        tune_config=tune.TuneConfig(
            # No metric/mode here (the scheduler and searcher carry them): with them Ray's console prints
            # a "Current best trial" by the last epoch, one line above the summary's best over all epochs.
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=s.num_samples,
            reuse_actors=reuse_actors,  # TuneSettings.reuse_actors: CPU trials on one machine, when set
        ),
        run_config=tune.RunConfig(
            name=s.experiment_name,
            storage_path=root.fs_path if root.is_s3 else root.uri,
            storage_filesystem=fs,
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            # The best checkpoints by the metric are kept, and the latest (Ray never deletes it), so
            # best_trial.json can name the best epoch's checkpoint and a resume continues from the latest.
            # Ranked by CHECKPOINT_SCORE: the metric, NaN (ranked last) for epochs that cannot be the best
            # (a search's warm-up), so a warm-up epoch that scores higher never displaces the best one.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=s.checkpoints_to_keep, checkpoint_score_attribute=CHECKPOINT_SCORE, checkpoint_score_order=s.mode
            ),
            callbacks=[metrics, CheckpointFallback(), ResultFilesToStorage(), *callbacks],
            verbose=verbose,
        ),
    )


def check_resume(plan: ExperimentPlan) -> bool:
    """Whether the experiment exists in storage (a submission resumes it); raises ExperimentError
    naming every setting that changed since it started. Needs no running Ray."""
    location = plan.location
    if not tune.Tuner.can_restore(location.fs_path if location.is_s3 else location.uri,
                                  storage_filesystem=location.filesystem() if location.is_s3 else None):
        return False
    _check_same_experiment(plan, location)
    return True


def _ensure_resume_callback(tuner: tune.Tuner) -> None:
    """Experiments started before CheckpointFallback / ResultFilesToStorage existed get them on resume too."""
    run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)  # no public setter on restore
    if run_config is None:
        log.warning("cannot add the checkpoint fallback to this restored Tuner (Ray's internals changed)")
        return
    callbacks = list(run_config.callbacks or [])
    for kind in (CheckpointFallback, ResultFilesToStorage):
        if not any(isinstance(c, kind) for c in callbacks):
            callbacks.append(kind())
    run_config.callbacks = callbacks


def _check_same_experiment(plan: ExperimentPlan, location: storage.StorageLocation) -> None:
    raw = storage.read_bytes(location.child(SPEC_FILE), missing_ok=True)
    if raw is None:
        log.warning("%s has no %s; resuming without checking that the settings match", location.uri, SPEC_FILE)
        return
    changed = config_differences(json.loads(raw), plan.spec, ())  # "base_config.search.lr: 0.001 -> 0.002"
    if changed:
        raise ExperimentError(
            f"experiment {location.uri} was started with different settings (changed: {'; '.join(changed)}); "
            "Ray Tune resumes the original search space and scheduler, so resuming would silently ignore "
            "the change: use a new experiment_name, or restore the original settings"
        )


def _warn_about_layout(plan: ExperimentPlan, concurrency: int, location: storage.StorageLocation) -> None:
    if plan.ladder is not None and concurrency == 1 and plan.num_trials > 1:
        log.warning(
            "trials will run one at a time: ASHA then compares nothing while the first trial runs to max_t=%d, "
            "and which trials it stops depends on their order. Give trials fractional resources "
            "(e.g. resources.gpus_per_trial=0.25, cpus_per_trial=0.5) so several run and are compared at once.",
            plan.max_t,
        )
    if not location.is_s3 and alive_nodes() > 1:
        log.warning("storage %s is a local path on a %d-node cluster: it must be shared storage (NFS) mounted at the "
                    "same path on every node, else use s3://", location.uri, alive_nodes())


def _plan_text(plan: ExperimentPlan, concurrency: int, placement: ResourcePlan) -> str:
    s = plan.settings
    lines = [
        f"Experiment {s.experiment_name}: {plan.num_trials} trials ({s.searcher} search), "
        f"up to {concurrency} at once with {placement.cpus_per_trial:g} CPU / {placement.gpus_per_trial:g} GPU each "
        f"({s.resources.reserve_cpus_for_data:g} CPUs kept for Ray Data); metric {s.metric} ({s.mode})",
        placement.describe(),
        plan.ladder.describe(plan.num_trials) if plan.ladder else f"FIFO: every trial runs {plan.max_t} epochs",
    ]
    return "\n".join(lines)


def summarize_experiment(location: storage.StorageLocation) -> ExperimentSummary:
    """The summary of a finished or running experiment, rebuilt from its directory in storage."""
    raw = storage.read_bytes(location.child(SPEC_FILE), missing_ok=True)
    if raw is None:
        raise ExperimentError(f"{location.uri} is not an mmsearch experiment (no {SPEC_FILE})")
    spec = json.loads(raw)
    fs = location.filesystem() if location.is_s3 else None
    analysis = tune.ExperimentAnalysis(location.fs_path if location.is_s3 else location.uri, storage_filesystem=fs)
    state = asha_state.load_asha_state(location.child(asha_state.STATE_FILE)) or {}
    return summarize_analysis(
        analysis,
        experiment=location.uri.rsplit("/", 1)[-1],
        path=location.uri,
        metric=spec["metric"],
        mode=spec["mode"],
        max_t=spec["max_t"],
        rungs=spec["rungs"],
        stopped_by_asha=state.get("stopped_by_asha", {}),
        uri_prefix="s3://" if location.is_s3 else "",
    )


def _get_dotted(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        if not hasattr(node, part):
            raise ConfigError(f"epochs_key {key!r}: {type(node).__name__} has no field {part!r}")
        node = getattr(node, part)
    return node


__all__ = [
    "ExperimentError",
    "ExperimentOutcome",
    "ExperimentPlan",
    "check_resume",
    "derive_max_concurrent_trials",
    "experiment_location",
    "plan_experiment",
    "run_experiment",
    "run_plan",
    "summarize_experiment",
]
