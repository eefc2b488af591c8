"""The precompute job on Ray Data: encoder stages as batch inference over actor pools.

:class:`RayDataRunner` implements ``mmsearch.data.precompute.runner.StageRunner``: the stage's
inputs (image descriptors -- pickled ``ImageRecord``s, a few hundred bytes each, never pixels --
or texts) become a Ray Dataset of small Arrow blocks; ``map_batches`` runs the stage in a pool
of actors (the frozen encoder is loaded once per actor, in ``__init__``; one GPU per actor when
the cluster has GPUs, fp32 threads on CPU otherwise); results come back to the driver block by
block, in input order, and the pipeline writes them into the stores as they arrive. Ray Data
shows its progress bars while a stage runs; rows/s end up in the data set card.

:func:`run_precompute` picks the backend a config names; :func:`ensure_dataset` is what jobs
call to get a data set root, building it on first use (an existing complete root is reused
without starting anything). :func:`main` is the command line of ``jobs/precompute_latents.py``
and ``mmsearch precompute``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import ray

from mmsearch.config import load_config, replace
from mmsearch import storage
from mmsearch.data.precompute import PrecomputeResult, dataset_root_of, other_dataset_error, precompute
from mmsearch.data.precompute.arrow import from_arrow, to_arrow
from mmsearch.data.precompute.config import PrecomputeConfig, RayPrecomputeConfig, fingerprint
from mmsearch.data.precompute.runner import StageSpec
from mmsearch.progress import Progress

log = logging.getLogger(__name__)
_INPUT_TYPES = {"index": pa.int64(), "record": pa.binary(), "text": pa.string(), "sentence": pa.bool_()}


class _StageActor:
    """A Ray Data actor: builds the stage (loads the encoder) once, then encodes Arrow batches."""

    def __init__(self, kind: str, kwargs: dict[str, Any], threads: int) -> None:
        import torch

        if threads >= 1:
            torch.set_num_threads(threads)
        self.stage = StageSpec(kind, kwargs).build()  # type: ignore[arg-type]

    def __call__(self, batch: pa.Table) -> pa.Table:
        return to_arrow(self.stage(from_arrow(batch)))


class RayDataRunner:
    """Runs encoder stages as Ray Data batch inference (see the module docstring)."""

    name = "ray"

    def __init__(self, settings: RayPrecomputeConfig = RayPrecomputeConfig()) -> None:
        self.settings = settings
        self.used: dict[str, dict[str, Any]] = {}

    def _resources(self, kind: str, batches: int) -> dict[str, Any]:
        s = self.settings
        cluster = ray.cluster_resources()
        gpus = s.gpus_per_actor if s.gpus_per_actor is not None else (1.0 if cluster.get("GPU", 0) > 0 else 0.0)
        wanted = s.image_actors if kind == "image" else s.text_actors
        if wanted is None:
            if gpus > 0:
                wanted = max(1, int(cluster.get("GPU", 0) // gpus))
            else:
                wanted = max(1, int(cluster.get("CPU", 1) // s.cpus_per_actor))
        return {"actors": max(1, min(wanted, batches)), "num_cpus": s.cpus_per_actor, "num_gpus": gpus}

    def run(self, spec: StageSpec, inputs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        total = len(inputs["index"])
        if total == 0:
            return
        size = self.settings.image_batch if spec.kind == "image" else self.settings.text_batch
        table = pa.table({name: pa.array(values, type=_INPUT_TYPES[name]) for name, values in inputs.items()})
        blocks = [table.slice(start, size) for start in range(0, total, size)]
        resources = self._resources(spec.kind, len(blocks))
        self.used[spec.kind] = resources
        if not spec.uses_encoder:
            resources = {**resources, "num_gpus": 0.0}
        log.info("%s stage on Ray Data: %d rows in %d batches, %d actor(s) x %g CPU / %g GPU", spec.kind, total,
                 len(blocks), resources["actors"], resources["num_cpus"], resources["num_gpus"])
        context = ray.data.DataContext.get_current().copy()
        context.execution_options.preserve_order = True  # stores come out in input order, like the local run
        with ray.data.DataContext.current(context), warnings.catch_warnings():
            # max_restarts below: Ray 2.60 takes it only through the generic remote args, which it
            # marks deprecated (removal planned for 2.64) without a named replacement yet.
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            dataset = ray.data.from_arrow(blocks).map_batches(
                _StageActor,
                fn_constructor_kwargs={"kind": spec.kind, "kwargs": spec.kwargs, "threads": max(1, math.floor(resources["num_cpus"]))},
                batch_size=size,
                batch_format="pyarrow",
                zero_copy_batch=True,
                compute=ray.data.ActorPoolStrategy(size=resources["actors"]),
                num_cpus=resources["num_cpus"],
                num_gpus=resources["num_gpus"],
                # No actor restarts: the constructor arguments live in the object store, where a
                # restart cannot count on them (Ray logs an error-level line for every such actor);
                # a failed stage fails the job, and resubmitting it rebuilds the data set.
                max_restarts=0,
            )
            progress = Progress(f"{spec.kind} stage", total, log=log)  # a line every few seconds: rate, ETA
            for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
                progress.advance(block.num_rows)
                yield from_arrow(block)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "image_batch": self.settings.image_batch,
            "text_batch": self.settings.text_batch,
            "stages": self.used,
            "cluster": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")},
        }


def run_precompute(cfg: PrecomputeConfig, *, overwrite: bool = False) -> PrecomputeResult:
    """Build (or reuse) the data set with the backend ``cfg.backend`` names. With ``ray`` it
    joins the running cluster (``RAY_ADDRESS``) or starts Ray here, unless Ray is already up."""
    if cfg.backend == "local":
        return precompute(cfg, overwrite=overwrite)
    root = dataset_root_of(cfg)
    if not overwrite and root.has_card():  # reuse, or refuse another data set: no need to start Ray
        card = root.read_card()
        if card.fingerprint != fingerprint(cfg):
            raise other_dataset_error(root, card, fingerprint(cfg))
        return precompute(cfg, overwrite=False)
    if not ray.is_initialized():
        from mmsearch.orchestration.cluster import connect

        connect()
    return precompute(cfg, RayDataRunner(cfg.ray), overwrite=overwrite)


def ensure_dataset(
    config: PrecomputeConfig | str | os.PathLike[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    backend: str | None = None,
) -> str:
    """The root of the data set ``config`` describes, built on first use; returns its URI.

    ``config`` is a ``PrecomputeConfig``, a YAML path, or None for the default embedded data set
    (``configs/data/scenes.yaml``, equal to ``PrecomputeConfig()``). Without ``output`` the root
    is ``$MMSEARCH_CACHE`` (or ``~/.cache/mmsearch``) ``/<name>-<fingerprint>``, so every job
    that asks for the same data shares one copy.
    """
    if config is None or isinstance(config, (str, Path)):
        cfg = load_config(PrecomputeConfig, config, overrides)
    else:
        cfg = config if not overrides else load_config(PrecomputeConfig, _plain(config), overrides)
    if backend is not None:
        cfg = replace(cfg, backend=backend)
    result = run_precompute(cfg)
    if result.built:
        print(f"precomputed data set {cfg.name!r} written to {result.root}", flush=True)
    return result.root


def build_parser() -> argparse.ArgumentParser:
    from mmsearch.cli_parsers import precompute_parser

    return precompute_parser()


def main(argv: list[str] | None = None) -> int:
    """The command line; exit status 2 with one message for bad input (a bad key or value, an
    output that is unreachable or holds another data set, a source without the records asked for)."""
    from mmsearch.config import ConfigError, config_path
    from mmsearch.data.dataset_root import DatasetError
    from mmsearch.data.store import StoreError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    from mmsearch.orchestration.quiet import set_verbose

    set_verbose(args.verbose)
    overrides = list(args.overrides)
    if args.output is not None:
        overrides.append(f"output={args.output}")
    if args.backend is not None:
        overrides.append(f"backend={args.backend}")
    try:
        cfg = load_config(PrecomputeConfig, config_path(args.config) if args.config else None, overrides)
        if args.check:
            print(f"data set {cfg.name!r} ({cfg.backend} backend) would go to {dataset_root_of(cfg).uri}; nothing run")
            return 0
        result = run_precompute(cfg, overwrite=args.overwrite)
    except (ConfigError, DatasetError, StoreError, storage.StorageError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    card = result.card
    rates = card.throughput
    if result.built:
        print(f"data set {card.name!r} written to {result.root}")
    else:
        print(f"data set {card.name!r} already complete at {result.root} (fingerprint {card.fingerprint}); nothing to do")
    print(
        f"  {rates.get('images', 0)} images, {rates.get('regions', 0)} regions ({rates.get('regions_per_s', 0):.0f} regions/s), "
        f"{rates.get('texts', 0)} texts ({rates.get('texts_per_s', 0):.0f} texts/s; "
        f"{rates.get('encoded_texts', 0)} through the text encoder), "
        f"{rates.get('seconds', {}).get('total', 0):.1f} s in all on the {rates.get('backend')} backend"
    )
    print("  rows per split: " + json.dumps(card.splits))
    return 0


def _plain(cfg: PrecomputeConfig) -> dict[str, Any]:
    from mmsearch.config import config_to_dict

    return config_to_dict(cfg)


__all__ = ["RayDataRunner", "build_parser", "ensure_dataset", "main", "run_precompute"]
