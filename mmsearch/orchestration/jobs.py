"""The user-facing Ray jobs: many supernet searches (VQA, ITM, VG) or FuseMix trainings under ASHA.

Each ``jobs/*.py`` script is ``sys.exit(main(JOBS[name]))``; ``mmsearch search --task vqa ...``
runs the same :func:`main`. A job:

1. reads its config (``configs/search/vqa.yaml``: ``recipe:``, ``tune:`` and ``dataset:``
   sections; see :mod:`.jobs_config`) and the command line, and validates all of it: a bad key
   or value, an unknown op in a search pool, an impossible search space or ASHA ladder, a storage
   it cannot write, or missing data each fail here, naming the problem, before any trial starts;
2. joins the Ray cluster it was submitted to (``ray job submit``), or the one in ``RAY_ADDRESS``
   or ``--address``, else starts Ray on this machine, and prints the dashboard address;
3. builds the data set on first use (``dataset:``; reused by every later job) and checks that
   the trials can read it (:mod:`.jobs_data`);
4. runs the experiment (:func:`~mmsearch.orchestration.experiment.run_experiment`): trials share
   the one data set in storage (FuseMix streams its latent store through Ray Data), ASHA stops
   the poor ones at the epochs of its rung ladder, results go to ``tune.storage_path``. The same
   experiment name resumes instead of starting over (finished trials are kept, unfinished and
   errored ones continue from their last checkpoints), so resubmitting a killed job is safe;
5. writes the best trial and, for searches, the best architecture spec into the experiment
   directory, optionally retrains that architecture (``--then-train``), and builds the report
   (:mod:`.jobs_results`).

Exit status: 0 when every trial completed or was stopped by ASHA; 1 when a trial errored (after
its retries) or did not finish (resubmit to resume it); 2 for bad input (nothing was run).

Resources: ``tune.resources`` gives CPUs and GPUs per trial; how many run at once follows from
the cluster. On one machine with one GPU, give trials a fraction of it so that several run and
are compared by ASHA as they go (``tune.resources.gpus_per_trial=0.25`` runs four at once):
``python jobs/search_vqa.py tune.resources.gpus_per_trial=0.25 tune.resources.cpus_per_trial=2``.
The recipes put themselves on the GPU Ray gives them (``search.device: auto``).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Any, Callable, Mapping, Sequence

from mmsearch.config import ConfigError, config_to_dict, read_yaml, validate_config
from mmsearch.orchestration.jobs_config import JobConfig, JobOptions, SmokeTest, load_job_config, resolve_path
from mmsearch.orchestration.jobs_data import FUSEMIX_DATA, SEARCH_DATA, DataBinding, bind_data, dataset_root
from mmsearch.orchestration.jobs_trials import fusemix_trial, search_trial
from mmsearch.recipes.fusemix_config import FuseMixConfig
from mmsearch.recipes.search_config import SearchConfig

log = logging.getLogger(__name__)

# Set before Ray starts: Tune warns about frequent experiment snapshots, which every epoch's
# checkpoint of many short trials triggers; it is expected here.
JOB_ENVIRONMENT = {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
BAD_INPUT_EXIT, TRIALS_FAILED_EXIT = 2, 1


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """Everything that differs between the jobs."""

    name: str  # "search_vqa"
    description: str
    trial: Callable[..., Any]  # the Tune trial function: fn(config, context)
    config_cls: type
    epochs_key: str  # the recipe's number of epochs (ASHA's max_t)
    default_config: str
    data: DataBinding
    smoke_test: SmokeTest
    default_tune: str | None = None  # for plain recipe configs (no tune: section)
    default_dataset: Mapping[str, Any] | None = None  # for configs without a dataset: section
    defaults: tuple[str, ...] = ()  # overrides applied before everything else
    task: str | None = None  # search jobs: the task (vqa / itm / vg); enables --then-train

    def load(self, options: JobOptions) -> JobConfig:
        return load_job_config(
            dataclasses.replace(options, overrides=(*self.defaults, *options.overrides)),
            config_cls=self.config_cls,
            default_config=self.default_config,
            default_tune=self.default_tune,
            default_dataset=self.default_dataset,
            smoke_test=self.smoke_test,
            data_keys=self.data.keys,
        )


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    experiment: str  # the experiment directory (URI)
    exit_code: int
    summary: Any = None  # ExperimentSummary
    best_trial: dict[str, Any] | None = None
    best_arch: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    report: str | None = None


def _search_smoke(task: str) -> SmokeTest:
    """Tiny data set and supernet, 2 epochs (1 warm-up), rungs at epoch 1 and 2: about a minute on 2 CPUs."""
    val = {"vqa": 64, "itm": 50, "vg": 64}[task]
    return SmokeTest(
        recipe=(
            "search.epochs=2", "search.warmup_epochs=1", "search.arch_every=2", "search.batch_size=16",
            "search.arch_batch_size=16", "search.max_steps_per_epoch=8",
            "model.hidden=32", "model.head_dim=16", "model.relation_dim=16",
            "model.enc_depth=2", "model.dec_depth=2", "head.flat_mlp_size=32",
            f"data.limit={{weights: 256, arch: 64, val: {val}}}", f"eval.batch_size={val}",
        ),
        tune=("num_samples=1", "scheduler.grace_period=1", "scheduler.reduction_factor=2",
              "resources.cpus_per_trial=0.5", "resources.reserve_cpus_for_data=0", "max_failures=1"),
        dataset=("source.scenes.num_scenes=80", "backend=local"),
    )


# --then-train --smoke-test: the derived network trained for 2 short epochs.
THEN_TRAIN_SMOKE = (
    "model.hidden=32", "model.head_dim=16", "head.flat_mlp_size=32", "train.epochs=2",
    "train.batch_size=16", "train.max_steps_per_epoch=5", "eval.batch_size=64", "data.limit={train: 256, val: 64, test: 64}",
)


def search_job(task: str) -> JobSpec:
    return JobSpec(
        name=f"search_{task}",
        description=f"One-shot supernet searches for {task.upper()} on Ray Tune with ASHA.",
        trial=search_trial,
        config_cls=SearchConfig,
        epochs_key="search.epochs",
        default_config=f"configs/search/{task}.yaml",
        data=SEARCH_DATA,
        smoke_test=_search_smoke(task),
        default_dataset={},
        task=task,
    )


FUSEMIX_JOB = JobSpec(
    name="tune_fusemix",
    description="FuseMix adapter trainings on Ray Tune with ASHA; trials stream the latent store through Ray Data.",
    trial=fusemix_trial,
    config_cls=FuseMixConfig,
    epochs_key="train.epochs",
    default_config="configs/fusemix/scenes.yaml",
    default_tune="configs/tune/fusemix_scenes.yaml",
    default_dataset={"tables": ["pairs"]},  # image and caption latents only: no region crops
    defaults=("recipe.data.backend=ray",),
    data=FUSEMIX_DATA,
    smoke_test=SmokeTest(
        recipe=("train.epochs=2", "train.batch_size=32", "train.num_threads=1", "optim.warmup_steps=2",
                "model.out_dim=32", "model.x={depth: 1, width_factor: 1, dropout: 0.1}",
                "model.y={depth: 1, width_factor: 1, dropout: 0.1}", "eval.batch_size=256"),
        tune=("num_samples=2", "scheduler.grace_period=1", "scheduler.reduction_factor=2",
              "search_space={optim.lr: {loguniform: [3.0e-4, 3.0e-3]}, loss.mixup_alpha: {choice: [0.0, 1.0]}}",
              "resources.cpus_per_trial=0.5", "resources.reserve_cpus_for_data=0.5", "max_failures=1"),
        dataset=("source.scenes.num_scenes=80", "backend=local"),
    ),
)


JOBS: dict[str, JobSpec] = {
    "search_vqa": search_job("vqa"),
    "search_itm": search_job("itm"),
    "search_vg": search_job("vg"),
    "tune_fusemix": FUSEMIX_JOB,
}
SEARCH_TASKS = ("vqa", "itm", "vg")


def job_spec(name: str) -> JobSpec:
    if name not in JOBS:
        raise KeyError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
    return JOBS[name]


# ------------------------------------------------------------------------------------ command line


def build_parser(spec: JobSpec, prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=spec.description,
        epilog="Overrides are dotted keys of a section: recipe.search.epochs=4 tune.num_samples=8 "
               "dataset.source.scenes.num_scenes=500. Resubmitting with the same --name resumes the experiment.",
    )
    parser.add_argument("args", nargs="*", metavar="[CONFIG.yaml] key=value",
                        help=f"config file (default {spec.default_config}) and overrides")
    parser.add_argument("--config", help="job config YAML (same as a positional CONFIG.yaml)")
    parser.add_argument("--tune", dest="tune_file", help="tune settings YAML, for a plain recipe config"
                        + (f" (default {spec.default_tune})" if spec.default_tune else ""))
    parser.add_argument("--name", help="experiment name (the same name resumes the experiment)")
    parser.add_argument("--storage", help="where experiments go: a local/NFS path or s3://bucket/prefix")
    parser.add_argument("--data-root", help="an existing precomputed data set (local or s3://); nothing is built")
    parser.add_argument("--smoke-test", action="store_true",
                        help="tiny data set, model and search space: checks the whole path in about a minute on 2 CPUs")
    if spec.task is not None:
        parser.add_argument("--then-train", action="store_true",
                            help="after the search, train the best architecture from scratch (Ray Train) and "
                                 "record searched vs retrained metrics")
        parser.add_argument("--train-config", help=f"training config for --then-train (default configs/train/{spec.task}.yaml)")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, the submitted job's cluster, else local)")
    parser.add_argument("--check", dest="check_only", action="store_true",
                        help="validate config, storage and data, print the plan, run nothing")
    return parser


def options_from_args(args: argparse.Namespace) -> JobOptions:
    configs = [a for a in args.args if "=" not in a]
    overrides = tuple(a for a in args.args if "=" in a)
    if len(configs) > 1 or (configs and args.config):
        raise ConfigError(f"one config file, please (got {[*configs, *([args.config] if args.config else [])]}); "
                          "overrides look like key.path=value")
    return JobOptions(
        config=args.config or (configs[0] if configs else None),
        overrides=overrides,
        name=args.name,
        storage=args.storage,
        smoke_test=args.smoke_test,
        then_train=getattr(args, "then_train", False),
        data_root=args.data_root,
        tune_file=args.tune_file,
        train_config=getattr(args, "train_config", None),
        address=args.address,
        check_only=args.check_only,
    )


def main(spec: JobSpec, argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the job ``spec`` with command-line arguments ``argv``; returns the exit status."""
    args = build_parser(spec, prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    try:
        return run_job(spec, options_from_args(args)).exit_code
    except _bad_input_errors() as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return BAD_INPUT_EXIT


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    from mmsearch.data.dataset_root import DatasetError
    from mmsearch.data.store import StoreError
    from mmsearch.orchestration.asha import SchedulerConfigError
    from mmsearch.orchestration.experiment import ExperimentError
    from mmsearch.orchestration.jobs_data import DataCheckError
    from mmsearch.orchestration.search_space import SearchSpaceError
    from mmsearch.orchestration.storage import StorageError

    return (ConfigError, SearchSpaceError, SchedulerConfigError, StorageError, ExperimentError, DataCheckError,
            DatasetError, StoreError)


# ------------------------------------------------------------------------------------------ the run


def run_job(spec: JobSpec, options: JobOptions) -> JobOutcome:
    """Validate, connect, prepare the data, run (or resume) the experiment, write results and report."""
    from mmsearch.orchestration import storage
    from mmsearch.orchestration.experiment import plan_experiment

    for key, value in JOB_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    job = spec.load(options)
    recipe = bind_data(spec.data, job.recipe, options.data_root)
    data_ready = True
    if job.dataset is not None:
        root, data_ready = dataset_root(job.dataset, build=False)
        recipe = spec.data.bind(recipe, root)
    plan = plan_experiment(spec.trial, spec.config_cls, recipe, job.tune, epochs_key=spec.epochs_key)
    train = _then_train_settings(spec, job, options, recipe, plan.location) if options.then_train else None
    cfg = validate_config(spec.config_cls, recipe, origin=job.origin)
    data_line = spec.data.check(cfg) if data_ready else None
    storage.preflight(plan.location)
    print(f"Results go to {plan.location.uri}", flush=True)
    if data_line is not None:
        print(data_line, flush=True)
    if options.check_only:
        print(plan.ladder.describe(plan.num_trials) if plan.ladder else f"FIFO: every trial runs {plan.max_t} epochs")
        if not data_ready:
            print(f"data set {job.dataset.name!r} would be built first, at {recipe_data_location(spec, recipe)}")
        return JobOutcome(plan.location.uri, 0)

    from mmsearch.orchestration.cluster import connect

    info = connect(options.address)
    _resource_hints(job, info.resources)
    if not data_ready:
        dataset_root(job.dataset, build=True)
        print(spec.data.check(cfg), flush=True)
    return _run_and_finish(spec, job, recipe, train)


def recipe_data_location(spec: JobSpec, recipe: Mapping[str, Any]) -> str:
    """The recipe's data setting(s), for messages."""
    values = []
    for key in spec.data.keys:
        node: Any = recipe
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        values.append(f"{key}={node}")
    return ", ".join(values)


def _run_and_finish(spec: JobSpec, job: JobConfig, recipe: dict[str, Any], train: dict[str, Any] | None) -> JobOutcome:
    from mmsearch.orchestration import jobs_results as results
    from mmsearch.orchestration.experiment import run_experiment

    outcome = run_experiment(spec.trial, spec.config_cls, recipe, job.tune, epochs_key=spec.epochs_key)
    location, summary = outcome.location, outcome.summary
    best = summary.best_trial
    searched = results.epoch_metrics(outcome.results, best.trial_id, best.best_epoch) if best else {}
    best_trial = results.write_best_trial(location, summary, searched)
    best_arch = results.write_best_arch(location, best) if (best is not None and spec.task is not None) else None
    comparison = None
    if train is not None and best_arch is not None:
        comparison = _then_train(location, searched, train)
    report = results.build_report_for(location)  # the report helper: mmsearch.report.build_report
    exit_code = 0 if best is not None and not (summary.count("errored") or summary.count("unfinished")) else TRIALS_FAILED_EXIT
    print(_closing_lines(summary, best_trial, best_arch, comparison, report, location.uri, exit_code), flush=True)
    return JobOutcome(location.uri, exit_code, summary, best_trial, best_arch, comparison, report)


def _resource_hints(job: JobConfig, resources: Mapping[str, float]) -> None:
    gpus = float(resources.get("GPU", 0))
    if gpus > 0 and job.tune.resources.gpus_per_trial == 0:
        print(f"Note: the cluster has {gpus:g} GPU(s) but trials use none; add tune.resources.gpus_per_trial=0.25 "
              "to run four trials per GPU (ASHA compares them as they go)", flush=True)


# ------------------------------------------------------------------------------- --then-train handoff


def _then_train_settings(spec: JobSpec, job: JobConfig, options: JobOptions, recipe: Mapping[str, Any],
                         experiment: Any) -> dict[str, Any]:
    """The training config and overrides for ``--then-train``, validated now (before any trial)."""
    if spec.task is None:
        raise ConfigError("--then-train is for search jobs")
    try:
        from mmsearch.orchestration.train import train_best_architecture  # noqa: F401  (the handoff)
        from mmsearch.recipes.train_derived_config import TrainDerivedConfig
    except ImportError as exc:
        raise ConfigError(f"--then-train needs mmsearch.orchestration.train.train_best_architecture ({exc})") from None
    path = resolve_path(options.train_config or f"configs/train/{spec.task}.yaml")
    raw = read_yaml(path)
    raw = raw["recipe"] if "recipe" in raw else raw
    overrides = [*(THEN_TRAIN_SMOKE if options.smoke_test else ()), f"data.root={recipe['data']['root']}",
                 f"run.storage_path={experiment.uri}", "run.name=retrain"]
    if job.tune.s3_endpoint_url:
        overrides.append(f"run.s3_endpoint_url={job.tune.s3_endpoint_url}")
    cfg = validate_config(TrainDerivedConfig, _overridden(raw, overrides), origin=f"{path} (--then-train)")
    if cfg.data.task != spec.task:
        raise ConfigError(f"--train-config {path} trains task {cfg.data.task!r}, the search is for {spec.task!r}")
    return {"config": config_to_dict(cfg)}


def _overridden(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    from mmsearch.config import apply_overrides

    return apply_overrides(dict(raw), overrides)


def _then_train(location: Any, searched: dict[str, float], train: dict[str, Any]) -> dict[str, Any]:
    """Train the experiment's best architecture (``best_arch.json``) and record searched vs retrained."""
    from mmsearch.orchestration import jobs_results as results
    from mmsearch.orchestration.train import train_best_architecture

    print(f"Training the best architecture from scratch (--then-train): {location.uri}/{results.RETRAIN_RUN}", flush=True)
    handoff = train_best_architecture(location.uri, train["config"])
    return results.write_comparison(location, searched, handoff)


def _closing_lines(summary: Any, best_trial: dict | None, best_arch: dict | None, comparison: dict | None,
                   report: str | None, experiment: str, exit_code: int) -> str:
    from mmsearch.orchestration.jobs_results import BEST_ARCH_FILE, describe_counts

    lines = [f"Experiment {experiment}: {len(summary.trials)} trials ({describe_counts(summary)})"]
    if best_trial is not None:
        lines.append(f"  best trial {best_trial['trial_id']}: {best_trial['metric']} = {best_trial['value']:.4g} "
                     f"at epoch {best_trial['epoch']}, config {best_trial['config']}")
    if best_arch is not None:
        lines.append(f"  best architecture: {experiment}/{BEST_ARCH_FILE}")
    if comparison is not None:
        lines.append(f"  searched {comparison['searched']} vs retrained {comparison['retrained']}")
    if report is not None:
        lines.append(f"  report: {report}")
    if exit_code:
        lines.append("  some trials errored or did not finish: resubmit the same command to resume them")
    return "\n".join(lines)


__all__ = ["JOBS", "SEARCH_TASKS", "JobOutcome", "JobSpec", "build_parser", "job_spec", "main", "run_job", "search_job"]
