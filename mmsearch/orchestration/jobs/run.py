"""The user-facing Ray jobs: many supernet searches (VQA, ITM, VG) or FuseMix trainings under ASHA.

Each Tune job script (``jobs/search_*.py``, ``jobs/tune_fusemix.py``) calls ``mmsearch.cli.run_tune_job(name)``,
which parses its arguments and runs :func:`main` on ``JOBS[name]``, as ``mmsearch search --task vqa ...`` does. A job:

1. reads its config (``configs/search/vqa.yaml``: ``recipe:``, ``tune:`` and ``dataset:``
   sections; see :mod:`.config`) and the command line, and validates all of it: a bad key
   or value, an unknown op in a search pool, an impossible search space or ASHA ladder, a storage
   it cannot write, or missing data each fail here, naming the problem, before any trial starts;
2. joins the Ray cluster it was submitted to (``ray job submit``) or the one in ``RAY_ADDRESS``,
   else starts Ray on this machine, and prints the dashboard address (``RAY_AUTH_MODE`` is
   settled by the entry point before Ray is imported: :mod:`.env`);
3. builds the data set on first use (``dataset:``; reused by every later job) and checks that
   the trials can read it (:mod:`.data`);
4. runs the experiment (:func:`~mmsearch.orchestration.experiment.run_experiment`): trials share
   the one data set in storage (FuseMix streams its latent store through Ray Data), ASHA stops
   the poor ones at the epochs of its rung ladder, results go to ``tune.storage_path``. The same
   experiment name resumes instead of starting over (finished trials are kept, unfinished and
   errored ones continue from their last checkpoints), so resubmitting a killed job is safe;
5. writes the best trial and, for searches, the best architecture spec into the experiment
   directory; with ``shortlist.enabled`` retrains the top-k distinct searched architectures and
   the anchors under ASHA and makes the winner on val the experiment's ``best_arch.json``
   (:mod:`.shortlist`); optionally retrains that architecture (``--then-train``), and builds
   the report (:mod:`.results`).

Exit status: 0 when every trial completed or was stopped by ASHA; 1 when a trial errored (after
its retries) or did not finish (resubmit to resume it); 2 for bad input (nothing was run).

Resources: ``tune.resources`` gives CPUs per trial; how many run at once follows from the
cluster. A cluster with GPUs (one local GPU included) is shared by default: each trial gets the
fraction that lets the planned concurrent trials run together
(:mod:`mmsearch.orchestration.resource_plan`), and the recipes run on the GPU Ray gives them in
bf16 autocast where it is supported (precision ``auto``);
the plan printed at the start says so. ``tune.resources.gpus_per_trial=0.25`` sets the fraction
by hand; ``--cpu`` keeps the trials on CPUs.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Any, Sequence

from mmsearch.cli_parsers import JOB_CARDS, JobCard, job_parser
from mmsearch.config import ConfigError
from mmsearch.orchestration.jobs.config import JobConfig, JobOptions
from mmsearch.orchestration.jobs.data import build_dataset, dataset_complete, dataset_uri
from mmsearch.orchestration.jobs.handoff import then_train, then_train_settings
from mmsearch.orchestration.jobs.specs import JOBS, SEARCH_TASKS, JobSpec, job_spec
from mmsearch.orchestration.quiet import set_verbose
from mmsearch.tasks import TASKS

log = logging.getLogger(__name__)

# Set before Ray starts: Tune warns about frequent experiment snapshots, which every epoch's
# checkpoint of many short trials triggers; it is expected here.
JOB_ENVIRONMENT = {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
BAD_INPUT_EXIT, TRIALS_FAILED_EXIT = 2, 1


def metric_meaning(task: str | None) -> str | None:
    """What a search's val_metric is (the task's primary metric, on the validation split), said with every number."""
    return TASKS.get(task).labels.meaning if task and task in TASKS else None


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    experiment: str  # the experiment directory (URI)
    exit_code: int
    summary: Any = None  # ExperimentSummary
    best_trial: dict[str, Any] | None = None
    best_arch: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    report: str | None = None


# ------------------------------------------------------------------------------------ command line


def build_parser(spec: JobSpec, prog: str | None = None) -> argparse.ArgumentParser:
    """The job's command line (:func:`mmsearch.cli_parsers.job_parser`: no torch or Ray needed for --help)."""
    card = JOB_CARDS.get(spec.name) or JobCard(spec.name, spec.description, spec.default_config, spec.default_tune, spec.task)
    return job_parser(card, prog)


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
        check_only=args.check_only,
        cpu=args.cpu,
    )


def main(spec: JobSpec, argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the job ``spec`` with command-line arguments ``argv``; returns the exit status."""
    args = build_parser(spec, prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    set_verbose(args.verbose)
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
    from mmsearch.orchestration.search_space import SearchSpaceError
    from mmsearch.recipes.entry import DataCheckError
    from mmsearch.storage import StorageError

    return (ConfigError, SearchSpaceError, SchedulerConfigError, StorageError, ExperimentError, DataCheckError,
            DatasetError, StoreError)


# ------------------------------------------------------------------------------------------ the run


def run_job(spec: JobSpec, options: JobOptions) -> JobOutcome:
    """Validate, connect, prepare the data, run (or resume) the experiment, write results and report.

    The recipe config is validated once, by ``spec.load`` (the job's edge, with its data bound);
    the plan, the storage preflight and the resume check run once each, here, before Ray starts,
    and the experiment runs that plan as it is."""
    from mmsearch import storage
    from mmsearch.orchestration.experiment import check_resume, plan_experiment

    for key, value in JOB_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    job = force_cpu(spec.load(options)) if options.cpu else spec.load(options)
    cfg, dataset = job.recipe, job.dataset
    if dataset is not None and dataset.output.startswith("s3://") and job.tune.s3_endpoint_url:
        # The data layer and the trials find S3 endpoints through AWS_ENDPOINT_URL (forwarded to workers).
        os.environ.setdefault("AWS_ENDPOINT_URL", job.tune.s3_endpoint_url)
    plan = plan_experiment(spec.trial, spec.config_cls, cfg, job.tune, epochs_key=spec.epochs_key)
    train = then_train_settings(spec.task, job, options, plan.location) if options.then_train else None
    shortlist = None
    if job.shortlist.enabled:
        from mmsearch.orchestration.jobs.shortlist import shortlist_train_config

        shortlist = shortlist_train_config(spec.task, job.shortlist, cfg.data.root, smoke_test=options.smoke_test)
    data_line = spec.data.check(cfg) if dataset is None else None  # data named by the user: checked first
    storage.preflight(plan.location)
    check_resume(plan)  # a resubmission with other settings fails here, naming them, before Ray starts
    print(f"Results go to {plan.location.uri}", flush=True)
    data_ready = dataset is None or dataset_complete(dataset)
    if data_ready and dataset is not None:
        data_line = spec.data.check(cfg)
    if data_line is not None:
        print(data_line, flush=True)
    meaning = metric_meaning(spec.task)
    if meaning is not None:
        print(f"val_metric is the {meaning}", flush=True)
    if options.check_only:
        print(plan.ladder.describe(plan.num_trials) if plan.ladder else f"FIFO: every trial runs {plan.max_t} epochs")
        if not data_ready:
            print(f"data set {dataset.name!r} would be built first, at {dataset_uri(dataset)}")
        return JobOutcome(plan.location.uri, 0)

    from mmsearch.orchestration.cluster import connect

    connect()
    if not data_ready:
        build_dataset(dataset)
        data_line = spec.data.check(cfg)
        if data_line is not None:
            print(data_line, flush=True)
    return _run_and_finish(spec, job, plan, train, shortlist)


def _run_and_finish(spec: JobSpec, job: JobConfig, plan: Any, train: Any | None, shortlist: Any | None = None) -> JobOutcome:
    """Run (or resume) the planned experiment, then write the best trial / architecture, --then-train, the report."""
    from mmsearch.orchestration.jobs import results
    from mmsearch.orchestration.experiment import run_plan

    outcome = run_plan(plan)
    location, summary = outcome.location, outcome.summary
    best = summary.best_trial
    searched = results.epoch_metrics(outcome.results, best.trial_id, best.best_epoch) if best else {}
    best_trial = results.write_best_trial(location, summary, searched)
    best_arch = results.write_best_arch(location, best) if (best is not None and spec.task is not None) else None
    if best_arch is not None:
        from mmsearch.orchestration.jobs.shortlist import write_search_diagnostics

        agreement = write_search_diagnostics(location, summary)["agreement"]
        print(f"Searches agree on {agreement['mean']:.2f} of the blocks (chance {agreement['chance']:.2f}, "
              f"{agreement['searches']} searches): {location.uri}/search_diagnostics.json", flush=True)
    shortlisted = None
    if shortlist is not None and best_arch is not None:
        shortlisted = _shortlist(location, job, summary, shortlist)
        if shortlisted.get("winner") is not None:
            best_arch = shortlisted["best_arch"]
            searched = _searched_for(shortlisted["winner"], best.trial_id, searched)
    comparison = None
    if train is not None and best_arch is not None:
        comparison = then_train(location, searched, train)
    report = results.build_report_for(location)  # the report helper: mmsearch.report.build_report
    exit_code = 0 if best is not None and not (summary.count("errored") or summary.count("unfinished")) else TRIALS_FAILED_EXIT
    if shortlisted is not None and shortlisted.get("winner") is None:
        exit_code = TRIALS_FAILED_EXIT
    print(_closing_lines(summary, best_trial, best_arch, comparison, report, location.uri, exit_code, spec.task), flush=True)
    if shortlisted is not None:
        print(_shortlist_line(shortlisted), flush=True)
    return JobOutcome(location.uri, exit_code, summary, best_trial, best_arch, comparison, report)


def _shortlist(location: Any, job: JobConfig, summary: Any, train_base: Any) -> dict[str, Any]:
    from mmsearch.orchestration.jobs.shortlist import run_shortlist, searched_architectures

    depths = (job.recipe.model.enc_depth, job.recipe.model.dec_depth)  # the search's, when no search left an architecture
    searched = searched_architectures(location, summary)
    if searched:
        depths = (len(searched[0]["spec"]["enc"]), len(searched[0]["spec"]["dec"]))
    return run_shortlist(location, job.tune, job.shortlist, train_base, searched, depths)


def _searched_for(winner: dict[str, Any], best_trial_id: str, searched: dict[str, float]) -> dict[str, float]:
    """The search's val figures of the shortlist winner, for ``--then-train``'s comparison: the best
    trial's when it found the winner, its own trial's estimate otherwise, none for an anchor."""
    origin = str(winner.get("origin", ""))
    if origin == f"search trial {best_trial_id}":
        return searched
    return {"val_metric": float(winner["estimate"])} if winner.get("estimate") is not None else {}


def _shortlist_line(record: dict[str, Any]) -> str:
    winner = record.get("winner")
    if winner is None:
        return f"  shortlist: no winner ({record.get('error')})"
    metric, tau = record["metric"], record["estimate_vs_retrained"]["kendall_tau"]
    return (f"  shortlist winner {winner['label']} ({winner['origin']}): val {metric} {winner['val']:.4g}, test "
            f"{winner['test'].get(metric, float('nan')):.4g}; search estimate vs retrained val: Kendall tau {tau:.2f}")


def force_cpu(job: JobConfig) -> JobConfig:
    """``--cpu``: trials get no GPU (Ray then hides the GPUs from them, so ``device: auto`` is the CPU)."""
    given = job.tune.resources.gpus_per_trial
    if given:
        raise ConfigError(f"--cpu and tune.resources.gpus_per_trial={given:g} contradict each other; drop one")
    resources = dataclasses.replace(job.tune.resources, gpus_per_trial=0.0)
    return dataclasses.replace(job, tune=dataclasses.replace(job.tune, resources=resources))


def _closing_lines(summary: Any, best_trial: dict | None, best_arch: dict | None, comparison: dict | None,
                   report: str | None, experiment: str, exit_code: int, task: str | None = None) -> str:
    from mmsearch.orchestration.jobs.results import BEST_ARCH_FILE, describe_counts

    lines = [f"Experiment {experiment}: {len(summary.trials)} trials ({describe_counts(summary)})"]
    if best_trial is not None:
        meaning = metric_meaning(task)
        lines.append(f"  best trial {best_trial['trial_id']}: {best_trial['metric']} = {best_trial['value']:.4g}"
                     + (f" ({meaning})" if meaning and best_trial['metric'] == "val_metric" else "")
                     + f" at epoch {best_trial['epoch']}, config {best_trial['config']}")
    if best_arch is not None:
        lines.append(f"  best architecture: {experiment}/{BEST_ARCH_FILE}")
    if comparison is not None:
        retrained = ", ".join(f"{k} {v:.4g}" for k, v in comparison["retrained"].items())
        lines.append(f"  searched val_metric {comparison['searched'].get('val_metric', float('nan')):.4g}; "
                     f"retrained {retrained} ({comparison.get('retrain_run')})")
    if report is not None:
        lines.append(f"  report: {report}")
    if exit_code:
        lines.append("  some trials errored or did not finish: resubmit the same command to resume them")
    return "\n".join(lines)


__all__ = ["JOBS", "SEARCH_TASKS", "JobOutcome", "JobSpec", "build_parser", "job_spec", "main", "run_job"]
