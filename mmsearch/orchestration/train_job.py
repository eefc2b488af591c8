"""The derived-training job (``jobs/train_derived.py``, ``mmsearch train``): a derived architecture
trained with Ray Train (DDP, or DeepSpeed on request), from scratch. Its usage, what ``--arch``
takes and what is checked before Ray starts are in ``jobs/train_derived.py``'s docstring (what a
user opening the script reads); this module holds the job's logic.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from mmsearch.cli_parsers import train_parser as build_parser

if TYPE_CHECKING:  # torch is imported after the arguments are parsed (--help stays instant)
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig


def job_overrides(args: argparse.Namespace) -> list[str]:
    """The config overrides the flags stand for (the smoke test's first, ``key=value`` ones last)."""
    from mmsearch.recipes.train_derived.entry import TRAIN_SMOKE  # a run of about a minute on generated data

    overrides = list(TRAIN_SMOKE.recipe) if args.smoke_test else []
    flags = {"arch": args.arch, "scaling.num_workers": args.workers, "deepspeed": args.deepspeed, "run.name": args.name,
             "run.storage_path": args.storage}
    overrides += [f"{key}={value}" for key, value in flags.items() if value is not None]
    if args.gpu is not None:
        overrides.append(f"scaling.use_gpu={str(args.gpu).lower()}")
    return overrides + list(args.overrides)


def fit_to_machine(cfg: TrainDerivedConfig, args: argparse.Namespace, resources: dict[str, float], local: bool) -> TrainDerivedConfig:
    """Local Ray: use the GPUs found unless --cpu (one worker per GPU unless --workers), and on CPUs
    share the cores between the workers. On a cluster the config's values stand."""
    import dataclasses

    if not local:
        return cfg
    scaling = cfg.scaling
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    use_gpu = scaling.use_gpu if args.gpu is not None else (gpus > 0)
    workers = args.workers or (gpus if use_gpu and gpus > 0 else scaling.num_workers)
    cpus_per_worker = min(scaling.cpus_per_worker, cpus / workers)
    # The config was validated once, at load; only the scaling section is new (checked by its class).
    fitted = dataclasses.replace(scaling, use_gpu=use_gpu, num_workers=workers, cpus_per_worker=cpus_per_worker,
                                 gpus_per_worker=1.0 if use_gpu else scaling.gpus_per_worker)
    return dataclasses.replace(cfg, scaling=fitted)


def arch_defaults(arch: str | None, args: argparse.Namespace | None = None) -> tuple[str, list[str]]:
    """Without ``--config``: ``configs/train/<task>.yaml`` for the task the architecture was searched
    for (named specs and search results carry it; VQA for ``mcan`` or no ``--arch``), and its data:
    a search result's own data set, else the one ``python jobs/search_<task>.py`` reads (this
    machine's cache, built here on first use; not with ``--smoke-test``, ``--check`` or a
    ``data.root=`` override). Returns (config, overrides)."""
    from mmsearch.config import ConfigError
    from mmsearch.recipes.train_derived.arch import resolve_arch

    spec = None
    if arch is not None:
        try:
            spec = resolve_arch(arch)
        except (ValueError, FileNotFoundError, KeyError) as err:
            raise ConfigError(f"--arch {arch}: {err}") from None
    task = (spec.task if spec is not None else None) or "vqa"
    path = f"configs/train/{task}.yaml"
    print(f"config: {path} ({'the task of --arch ' + str(arch) if spec and spec.task else 'the default task'}; "
          "--config chooses another)", flush=True)
    if args is not None and (args.smoke_test or any(o.startswith("data.root=") for o in args.overrides)):
        return path, []
    searched_on = ((spec.config or {}).get("data") or {}).get("root") if spec is not None else None
    if searched_on and searched_on != "synthetic":
        print(f"data: {searched_on} (the data set the search read; data.root=... chooses another)", flush=True)
        return path, [f"data.root={searched_on}"]
    return path, [f"data.root={search_data_set(task, build=not (args is not None and args.check))}"]


def search_data_set(task: str, *, build: bool) -> str:
    """The data set ``python jobs/search_<task>.py`` reads, built now if it is not there yet."""
    from mmsearch.orchestration.jobs.config import JobOptions
    from mmsearch.orchestration.jobs.data import build_dataset, dataset_complete, dataset_uri
    from mmsearch.orchestration.jobs.specs import job_spec

    dataset = job_spec(f"search_{task}").load(JobOptions()).dataset
    if not dataset_complete(dataset):
        if build:
            build_dataset(dataset)
        else:
            print(f"data set {dataset.name!r} would be built first, at {dataset_uri(dataset)}", flush=True)
    print(f"data: {dataset_uri(dataset)} (the data set of search_{task}; data.root=... chooses another)", flush=True)
    return dataset_uri(dataset)


def load_job_config(args: argparse.Namespace) -> TrainDerivedConfig:
    """The validated config: ``--config`` (else the one for the architecture's task, see
    :func:`arch_defaults`), the flags and the overrides; raises ConfigError naming the problem."""
    import dataclasses

    from mmsearch.config import load_config, read_yaml
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig, default_run_name

    config, defaults = (args.config, []) if args.config else arch_defaults(args.arch, args)
    raw = read_yaml(config)  # a configs/... path not found here is the shipped config
    # The job's one validation of its config; what the driver changes later (the smoke run's
    # name, the resolved architecture and sizes, the fit to the machine) replaces fields of it.
    cfg = load_config(TrainDerivedConfig, raw["recipe"] if "recipe" in raw else raw, defaults + job_overrides(args))
    if args.smoke_test and not args.name:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, name=default_run_name(cfg) + "_smoke"))
    return cfg


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """What bad input raises: exit status 2, one line, nothing run."""
    from mmsearch.config import ConfigError
    from mmsearch.storage import StorageError
    from mmsearch.orchestration.train import TrainSetupError
    from mmsearch.orchestration.train_resume import ResumeError

    # ValueError covers DatasetError, StoreError and the config checks; FileNotFoundError a missing arch or file.
    return ConfigError, TrainSetupError, ResumeError, StorageError, FileNotFoundError, ValueError


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    from mmsearch.orchestration.quiet import set_verbose

    set_verbose(args.verbose)
    try:
        cfg = load_job_config(args)
    except bad_input_errors() as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    if args.check:
        from mmsearch.recipes.train_derived.arch import resolve_arch

        try:
            spec = resolve_arch(cfg.arch)
        except (ValueError, FileNotFoundError, KeyError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"config valid: {cfg.data.task} on {cfg.data.root}, architecture {spec.source or cfg.arch} "
              f"({len(spec.enc)}+{len(spec.dec)} blocks), {cfg.train.epochs} epochs, {cfg.scaling.num_workers} worker(s)"
              f"{', DeepSpeed' if cfg.deepspeed else ''}; nothing run")
        return 0
    from mmsearch.orchestration.train import prepare_run, rescale, run_prepared

    try:  # everything that can be checked without Ray: config, architecture, data, DeepSpeed config, storage, resume
        prepared = prepare_run(cfg)
    except bad_input_errors() as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2

    from mmsearch.orchestration.cluster import connect

    info = connect()
    try:
        cfg = fit_to_machine(prepared.config, args, info.resources, local=info.mode == "local")
        result = run_prepared(rescale(prepared, cfg.scaling))
    except bad_input_errors() as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    print(result.describe())
    print(f"  results:     {result.outputs}/train_result.json, predictions in {result.outputs}/predictions/")
    return 0


__all__ = ["arch_defaults", "build_parser", "fit_to_machine", "job_overrides", "load_job_config", "main"]
