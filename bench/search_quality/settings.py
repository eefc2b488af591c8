"""The search-quality benchmark's settings: what is searched and retrained, at which size and budget,
and the architecture helpers shared by the cells and the report (``bench/bench_search_quality.py``)."""
from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any, Mapping

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results" / "search_quality.json"
MARKDOWN = REPO / "bench" / "search_quality.md"
TASKS = ("vqa", "vg", "itm")
SHORT = {"self_att": "SA", "guided_att": "GA", "rel_self_att": "RSA", "feed_forward": "FFN"}

# --- the benchmark's settings ---------------------------------------------------------------
# Depth 4 + 6 at H=64 (2 heads of 32): the shipped CPU search configs' size. The space holds
# 2^4 * 4^6 = 65,536 architectures, every decoder op can appear in several positions, and a
# search plus ten retrainings per task fit about 20 minutes of two cores.
MODEL = {"hidden": 64, "head_dim": 32, "enc_depth": 4, "dec_depth": 6}
# ITM: in-batch random negatives only (no mining, no dataset hard negatives) in the search and
# the retraining. An ITM step with the shipped settings runs ~14 rows per pair (mined candidates,
# hard and dataset negatives), ~3x the cost, and in pilots the training loss stayed at ln 2 per
# pair (chance) for 3 epochs with them and for 6 epochs without them.
_ITM_HEAD = {"num_candidates": 1, "use_dataset_negatives": False}
# Searches: configs/search/<task>.yaml (MMnas's algorithm scaled down) with uniform initial
# architecture weights: MMnas's MCAN-like prior starts every decoder block at p=0.71 on one op,
# so the derived architectures, their agreement and their op counts would mostly show the prior.
SEARCH = {task: {"model": {**MODEL, "alpha_init": "uniform"}, "search": {"num_threads": 1, "device": "cpu"},
                 **({"head": _ITM_HEAD} if task == "itm" else {})} for task in TASKS}


# Retraining: configs/train/<task>.yaml at the search's width with a shorter schedule (MMnas's
# 13 epochs with x0.2 at 10 and 12 -> 8 epochs with x0.2 at 6 and 8; ITM 5 epochs, x0.2 at 4),
# validation and test once, after the last epoch. Pilots (MCAN at this size): VQA test accuracy
# 40.4% after 8 epochs, 42.6% after 16 (a longer schedule changes little); VG acc@0.5 54%.
def _train_settings(epochs: int, decay: list[int], limit: dict[str, int], head: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {"model": {"hidden": 64, "head_dim": 32}, "optim": {"lr_decay_epochs": decay}, "data": {"limit": limit},
           "train": {"epochs": epochs, "num_threads": 1, "device": "cpu"},
           "eval": {"every_epochs": epochs, "predictions": False}}
    return {**out, "head": head} if head else out


TRAIN = {
    "vqa": _train_settings(8, [6, 8], {"train": 4000, "val": 800, "test": 800}),
    "vg": _train_settings(8, [6, 8], {"train": 4000, "val": 800, "test": 800}),
    "itm": _train_settings(5, [4], {"train": 1500, "val": 100, "test": 250}, _ITM_HEAD),
}
# --quick: tiny synthetic data and models, a couple of steps per epoch (checks that every cell
# and every table entry is produced; the figures mean nothing).
QUICK_MODEL = {"hidden": 16, "head_dim": 8, "enc_depth": 2, "dec_depth": 3, "word_dim": 8, "relation_dim": 8}
QUICK_SEARCH = {"model": {**QUICK_MODEL, "alpha_init": "uniform"}, "head": {"flat_mlp_size": 16},
                "search": {"epochs": 2, "warmup_epochs": 1, "batch_size": 8, "arch_batch_size": 4, "arch_every": 1,
                           "max_steps_per_epoch": 2, "num_threads": 1, "device": "cpu"},
                "eval": {"batch_size": 64}}
QUICK_TRAIN = {"model": {k: v for k, v in QUICK_MODEL.items() if k not in ("enc_depth", "dec_depth")},
               "head": {"flat_mlp_size": 16}, "optim": {"lr_decay_epochs": []},
               "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2, "num_threads": 1, "device": "cpu"},
               "eval": {"batch_size": 64, "predictions": False}}
QUICK_DATA = {"train_images": 20, "val_images": 6, "test_images": 6, "region_dim": 8, "text_state_dim": 8}


def benchmark_settings(args: argparse.Namespace, data_root: str) -> dict[str, Any]:
    """Everything that decides the results (stored with them and checked on resume)."""
    quick = bool(args.quick)
    model = QUICK_MODEL if quick else MODEL
    return {
        "quick": quick,
        "data_root": data_root,
        "synthetic": QUICK_DATA if quick else None,
        "tasks": list(args.tasks),
        "strategies": list(args.strategies),
        "search_seeds": list(range(args.seeds)),
        "random_seeds": [1000 + i for i in range(args.randoms)],
        "noise_seeds": list(range(args.noise_seeds)),
        "depths": [model["enc_depth"], model["dec_depth"]],
        "search": {t: copy.deepcopy(QUICK_SEARCH if quick else SEARCH[t]) for t in args.tasks},
        "train": {t: copy.deepcopy(QUICK_TRAIN if quick else TRAIN[t]) for t in args.tasks},
    }


def mcan_spec(enc_depth: int, dec_depth: int) -> Any:
    """MCAN as a genotype at any depth: encoder SA, FFN alternating; decoder SA, GA, FFN repeated
    (``named_spec("mcan")`` at 6 + 6 units = 12 + 18 blocks). ``mcan_prior_spec`` is MMnas's search
    prior instead, with RSA in place of the decoder SA."""
    from mmsearch.nas import ArchSpec

    enc, dec = ("self_att", "feed_forward"), ("self_att", "guided_att", "feed_forward")
    return ArchSpec(enc=tuple(enc[i % 2] for i in range(enc_depth)), dec=tuple(dec[i % 3] for i in range(dec_depth)),
                    source=f"MCAN pattern at {enc_depth}+{dec_depth} blocks")


def arch_line(spec: Mapping[str, Any]) -> str:
    """``"SA FFN SA FFN | GA RSA ..."`` of a spec dict (``{"enc": [[op]], "dec": [[op]]}``)."""
    ops = {c: [SHORT.get(b[0] if isinstance(b, list) else b, b) for b in spec[c]] for c in ("enc", "dec")}
    return " ".join(ops["enc"]) + " | " + " ".join(ops["dec"])


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, recursively for nested dicts (neither is modified)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out

