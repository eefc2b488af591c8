"""The ``mmsearch`` command: one entry point for the jobs, the adapters and the reports.

    mmsearch precompute [--config YAML] [--output URI] [key=value ...]   # = python jobs/precompute_latents.py
    mmsearch search --task vqa|itm|vg [args ...]                        # = python jobs/search_<task>.py
    mmsearch tune-fusemix [args ...]                                     # = python jobs/tune_fusemix.py
    mmsearch train --arch ARCH [--config YAML] [args ...]                # = python jobs/train_derived.py
    mmsearch embed EXPORT [args ...]                                     # use trained FuseMix adapters
    mmsearch report EXPERIMENT_DIR_OR_URI [--out DIR]                    # rebuild an experiment's report
    mmsearch export-arch EXPERIMENT [--format mmnas] [--out FILE]        # the best architecture for MMnas
    mmsearch import-mmnas CKPT --arch ARCH --task vqa --out DIR          # MMnas's own trained network

Every subcommand runs the same function as its job script, with the same arguments
(``mmsearch search --task vqa --smoke-test`` is ``python jobs/search_vqa.py --smoke-test``);
``mmsearch COMMAND -h`` shows them.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from mmsearch import cli_parsers

# Every command answers --help and usage errors from mmsearch.cli_parsers (standard library only)
# before it imports the module that runs it (torch, Ray, matplotlib: seconds to import). The job
# scripts in jobs/ call the same run_*_job functions, so a subcommand needs no source checkout.


def run_tune_job(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """A Ray Tune job (``jobs/search_*.py``, ``jobs/tune_fusemix.py``): arguments first, then the heavy imports."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cli_parsers.job_parser(cli_parsers.JOB_CARDS[name], prog).parse_args(argv)  # -h and usage errors end here
    from mmsearch.orchestration.jobs import JOBS, main

    return main(JOBS[name], argv, prog=prog)


def run_precompute_job(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The precompute job (``jobs/precompute_latents.py``): arguments first, then the heavy imports."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cli_parsers.precompute_parser(prog).parse_args(argv)  # -h and usage errors end here
    from mmsearch.orchestration.precompute import main

    return main(argv)


def run_train_job(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The derived-training job (``jobs/train_derived.py``): arguments first, then the heavy imports."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cli_parsers.train_parser(prog).parse_args(argv)  # -h and usage errors end here
    from mmsearch.orchestration.train_job import main

    return main(argv, prog=prog)


def _precompute(argv: list[str]) -> int:
    return run_precompute_job(argv, prog="mmsearch precompute")


def _train(argv: list[str]) -> int:
    return run_train_job(argv, prog="mmsearch train")


def _search(argv: list[str]) -> int:
    picker = argparse.ArgumentParser(prog="mmsearch search", add_help=False)
    tasks = [card.task for card in cli_parsers.JOB_CARDS.values() if card.task is not None]  # one per jobs/search_*.py
    picker.add_argument("--task", choices=tasks, default=tasks[0])
    known, rest = picker.parse_known_args(argv)
    return run_tune_job(f"search_{known.task}", rest, prog=f"mmsearch search --task {known.task}")


def _tune_command(name: str) -> Callable[[list[str]], int]:
    """The subcommand of a Tune job that is not a search (``tune_fusemix`` -> ``mmsearch tune-fusemix``)."""
    prog = "mmsearch " + name.replace("_", "-")

    def run(argv: list[str]) -> int:
        return run_tune_job(name, argv, prog=prog)

    return run


def _embed(argv: list[str]) -> int:
    cli_parsers.embed_parser().parse_args(argv)
    from mmsearch.embed import main

    return main(argv)


def _report(argv: list[str]) -> int:
    cli_parsers.report_parser().parse_args(argv)
    from mmsearch.report.cli import main

    return main(argv, prog="mmsearch report")


def _export_arch(argv: list[str]) -> int:
    cli_parsers.export_arch_parser().parse_args(argv)
    from mmsearch.export_arch import main

    return main(argv)


def _import_mmnas(argv: list[str]) -> int:
    cli_parsers.import_mmnas_parser().parse_args(argv)
    from mmsearch.mmnas_import import main

    return main(argv)


COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "precompute": ("precompute frozen-encoder latents into latent stores (Ray Data batch inference)", _precompute),
    "search": ("one-shot supernet searches on Ray Tune with ASHA (--task vqa|itm|vg; default vqa)", _search),
    # One per job card without a task (a recipe's Tune job): its name with dashes, the first clause of its description.
    **{card.name.replace("_", "-"): (card.description.split(";")[0], _tune_command(card.name))
       for card in cli_parsers.JOB_CARDS.values() if card.task is None},
    "train": ("train a derived architecture with Ray Train (DDP or DeepSpeed)", _train),
    "embed": ("embed latents, images or texts with exported FuseMix adapters", _embed),
    "report": ("rebuild the plots and HTML report of an experiment", _report),
    "export-arch": ("write a search's best architecture in MMnas's arch/*.json layout (--format mmnas)", _export_arch),
    "import-mmnas": ("load a checkpoint of MMnas's own VQA / VG / ITM network into the derived network", _import_mmnas),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmsearch",
        description="Distributed multimodal architecture search (MMnas) and adapter tuning (FuseMix) on Ray.",
        epilog="Run 'mmsearch COMMAND -h' for a command's arguments.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (summary, _) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mmsearch.orchestration.jobs.env import settle_ray_auth_mode

    settle_ray_auth_mode()  # before any command imports Ray: Ray reads RAY_AUTH_MODE once, at import
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        build_parser().print_help()
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        build_parser().print_usage(sys.stderr)
        print(f"mmsearch: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return COMMANDS[command][1](rest)


if __name__ == "__main__":
    sys.exit(main())
