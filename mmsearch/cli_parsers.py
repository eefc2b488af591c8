"""The command lines of every job and ``mmsearch`` subcommand, importable without torch or Ray.

``--help`` and usage errors are answered from these parsers before the entry points import the
heavy parts (torch, Ray, matplotlib take seconds to import), so ``python jobs/search_vqa.py -h``
or ``mmsearch report -h`` answer at once. The modules that run the commands use the same parsers
(``mmsearch.orchestration.jobs.build_parser``, ``mmsearch.orchestration.precompute``,
``mmsearch.embed``, ``mmsearch.report.cli``), so the two never disagree.

This module imports only the standard library.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class JobCard:
    """What a Ray Tune job's command line shows (the rest of the job: orchestration.jobs.specs)."""

    name: str  # "search_vqa"
    description: str
    default_config: str
    default_tune: str | None = None  # for plain recipe configs (no tune: section)
    task: str | None = None  # search jobs: vqa / itm / vg (enables --then-train)
    example_override: str = "recipe.search.epochs=4"
    recipe: str = "search"  # the recipe its trials run (mmsearch.recipes.registry.RECIPES)


def search_card(task: str) -> JobCard:
    """The card of a task's search job (``jobs/search_<task>.py``)."""
    return JobCard(name=f"search_{task}", description=f"One-shot supernet searches for {task.upper()} on Ray Tune with ASHA.",
                   default_config=f"configs/search/{task}.yaml", task=task)


JOB_CARDS: dict[str, JobCard] = {
    "search_vqa": search_card("vqa"),
    "search_itm": search_card("itm"),
    "search_vg": search_card("vg"),
    "tune_fusemix": JobCard(
        name="tune_fusemix",
        description="FuseMix adapter trainings on Ray Tune with ASHA; trials stream the latent store through Ray Data.",
        default_config="configs/fusemix/scenes.yaml",
        default_tune="configs/tune/fusemix_scenes.yaml",
        example_override="recipe.train.epochs=4",
        recipe="fusemix",
    ),
}


def job_parser(card: JobCard, prog: str | None = None) -> argparse.ArgumentParser:
    """The command line of a Ray Tune job (``jobs/search_*.py``, ``jobs/tune_fusemix.py``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=card.description,
        epilog=f"Overrides are dotted keys of a section: {card.example_override} tune.num_samples=8 "
               "dataset.source.scenes.num_scenes=500. Resubmitting with the same --name resumes the experiment. "
               "Output is quiet (the plan, Tune's trial table every 30 s, the summary); --verbose shows Ray's own logs.",
    )
    parser.add_argument("args", nargs="*", metavar="[CONFIG.yaml] key=value",
                        help=f"config file (default {card.default_config}) and overrides")
    parser.add_argument("--config", help="job config YAML (same as a positional CONFIG.yaml)")
    parser.add_argument("--tune", dest="tune_file", help="tune settings YAML, for a plain recipe config"
                        + (f" (default {card.default_tune})" if card.default_tune else ""))
    parser.add_argument("--name", help="experiment name (the same name resumes the experiment)")
    parser.add_argument("--storage", help="where experiments go: a local/NFS path or s3://bucket/prefix")
    parser.add_argument("--data-root", help="an existing precomputed data set (local or s3://); nothing is built")
    parser.add_argument("--smoke-test", action="store_true",
                        help="tiny data set, model and search space: checks the whole path in about a minute on 2 CPUs")
    if card.task is not None:
        parser.add_argument("--then-train", action="store_true",
                            help="after the search, train the best architecture from scratch (Ray Train) and "
                                 "record searched vs retrained metrics")
        parser.add_argument("--train-config", help=f"training config for --then-train (default configs/train/{card.task}.yaml)")
    parser.add_argument("--cpu", action="store_true",
                        help="run the trials on CPUs even where the cluster has GPUs (default: trials share the GPUs)")
    parser.add_argument("--check", dest="check_only", action="store_true",
                        help="validate config, storage and data, print the plan, run nothing")
    parser.add_argument("--verbose", action="store_true",
                        help="also print Ray's own logs (Tune's tables, checkpoint and Ray Data lines)")
    return parser


def precompute_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """``jobs/precompute_latents.py`` and ``mmsearch precompute``."""
    parser = argparse.ArgumentParser(prog=prog, description="Precompute frozen-encoder latents into latent stores.")
    parser.add_argument("--config", default=None, help="YAML config (default: the built-in embedded scenes, configs/data/scenes.yaml)")
    parser.add_argument("--output", default=None, help="data set root: local path or s3://bucket/prefix")
    parser.add_argument("--backend", choices=("ray", "local"), default=None, help="Ray Data actor pools or this process")
    parser.add_argument("--overwrite", action="store_true", help="rebuild even if the root holds a data set")
    parser.add_argument("--check", action="store_true", help="validate the config, print where the data set goes, run nothing")
    parser.add_argument("--verbose", action="store_true", help="also print Ray's own logs (Ray Data's execution plans)")
    parser.add_argument("overrides", nargs="*", help="config overrides key.path=value")
    return parser


def train_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """``jobs/train_derived.py`` and ``mmsearch train``."""
    parser = argparse.ArgumentParser(prog=prog, description="Train a derived architecture with Ray Train.")
    parser.add_argument("--config", help="training config (default: configs/train/<task>.yaml for the task of --arch; vqa without one)")
    parser.add_argument("--arch", help="named spec | spec JSON | search output or experiment directory (overrides the config's arch)")
    parser.add_argument("--workers", type=int, help="Ray Train workers (default: the config's scaling.num_workers; one per local GPU)")
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--gpu", dest="gpu", action="store_true", default=None, help="one GPU per worker")
    device.add_argument("--cpu", dest="gpu", action="store_false", help="CPU workers even if GPUs are present")
    parser.add_argument("--deepspeed", help="DeepSpeed JSON config (configs/deepspeed/*.json); default: DDP")
    parser.add_argument("--name", help="run name in storage (same name + storage = resume)")
    parser.add_argument("--storage", help="storage root: local dir, NFS mount or s3://bucket/prefix")
    parser.add_argument("--smoke-test", action="store_true", help="tiny run on generated data (checks the whole path)")
    parser.add_argument("--check", action="store_true", help="validate the config and the architecture, run nothing")
    parser.add_argument("--verbose", action="store_true", help="also print Ray's own logs (checkpoint lines, Ray Data plans)")
    parser.add_argument("overrides", nargs="*", help="config overrides key.path=value")
    return parser


def embed_parser(prog: str = "mmsearch embed") -> argparse.ArgumentParser:
    """``mmsearch embed``: exported FuseMix adapters over texts, images or latents."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Embed texts, images or precomputed latents with exported FuseMix adapters.",
    )
    parser.add_argument("export", type=Path, help="export directory (holds fusemix.json)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--texts", type=Path, help="UTF-8 file, one text per line (blank lines are skipped)")
    source.add_argument("--images", nargs="+", help="image files")
    source.add_argument("--latents", type=Path, help=".npy file of [n, dim] latents (needs --side)")
    parser.add_argument("--side", choices=("x", "y"), help="which adapter the --latents go through")
    parser.add_argument("--out", type=Path, required=True, help="output .npy ([n, out_dim] float32) or .parquet")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    return parser


def report_parser(prog: str = "mmsearch report") -> argparse.ArgumentParser:
    """``mmsearch report`` (also ``python -m mmsearch.report``)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Rebuild the plots and the static HTML report of a (finished or running) experiment.",
    )
    p.add_argument("experiment", help="experiment directory (local/NFS path or s3://bucket/prefix/name)")
    p.add_argument("--out", default=None, help="where to write the report (default: EXPERIMENT/report)")
    p.add_argument("--s3-endpoint-url", default=None, help="S3-compatible endpoint, e.g. http://127.0.0.1:9000")
    return p


def export_arch_parser(prog: str = "mmsearch export-arch") -> argparse.ArgumentParser:
    """``mmsearch export-arch``: a search's best architecture in another project's file layout."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Write the best architecture of a finished search (or any spec) as a file another tool loads.",
        epilog="--format mmnas writes MMnas's arch/*.json layout ({\"epochN\": {\"enc\": [[op]], \"dec\": [[op]]}}, "
               "MMnas's op names), which its train_*.py scripts read with --ARCH_PATH.",
    )
    p.add_argument("arch", help="a search experiment or output directory (local or s3://), a spec JSON or a named spec")
    p.add_argument("--format", choices=("mmnas", "mmsearch"), default="mmnas", help="file layout (default mmnas)")
    p.add_argument("--out", default=None, help="output JSON (default: print to stdout)")
    p.add_argument("--epoch", type=int, default=0,
                   help="the N of the epochN key (default 0: what MMnas's --GENO_EPOCH reads by default)")
    return p


def import_mmnas_parser(prog: str = "mmsearch import-mmnas") -> argparse.ArgumentParser:
    """``mmsearch import-mmnas``: a checkpoint of MMnas's own network as a derived-training checkpoint."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Load a checkpoint of MMnas's own VQA / VG / ITM network (its train_*.py .pkl) into the derived "
                    "network and write a derived-training checkpoint directory that evaluate_checkpoint loads.",
    )
    p.add_argument("checkpoint", help="MMnas checkpoint (.pkl with 'state_dict', or a bare state dict)")
    p.add_argument("--arch", required=True, help="the genotype it was trained with: MMnas's arch JSON (latest epochN), a spec JSON or a named spec")
    p.add_argument("--task", required=True, choices=("vqa", "vg", "vgd", "itm"), help="the network's task (vgd = vg)")
    p.add_argument("--out", required=True, help="output checkpoint directory")
    p.add_argument("--config", default=None, help="training config for the data / training sections (default configs/train/<task>.yaml)")
    return p


__all__ = ["JOB_CARDS", "JobCard", "embed_parser", "export_arch_parser", "import_mmnas_parser", "job_parser", "precompute_parser", "report_parser", "train_parser"]
