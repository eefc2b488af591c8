"""FuseMix evidence: five paired comparisons behind its defaults and the paper's claims (issue 17).

Comparisons (``--comparisons``), each on the embedded scenes with the FuseMix recipe
(``configs/fusemix/scenes.yaml``; data as ``bench_fusemix_scenes.py``):

    pairing   mixup partner choice: ``permutation`` (the default) vs ``halves`` (the reference),
              at ``--pairing-fractions`` of the training images;
    mixup     no mixup vs alpha in ``--alphas``, at ``--mixup-fractions`` (5 % .. 100 %);
    encoders  pretrained vs random-weight encoders (``efficientnet_lite0_random0``,
              ``minilm_random0``: the same networks, seeded random weights, their own cache
              fingerprint), each side's quality measured as the linear-probe accuracy of its
              latents on the scenes' attributes (which colours and shapes a scene holds);
    milnce    single-positive InfoNCE vs MIL-NCE (every caption of an image a positive);
    tuned     the shipped default vs a tuned configuration (``--tuned KEY=VALUE ...``, e.g. the
              config of ``best_trial.json`` from ``jobs/tune_fusemix.py``).

Equal compute. Within a comparison and data size every arm gets the same *adapter FLOPs*
(6 x the adapters' Linear MACs per row in the loss, forward and backward), not the same steps: the
budget is the baseline arm's ``--steps`` steps, and each arm's step count is the budget over its
own rows per step (``halves`` trains on B/2 mixed rows per B inputs, so it gets a 2B input batch:
the same contrastive batch and steps). Steps are rounded to whole epochs; the achieved FLOPs
(from the rows the recipe really put through the loss) are recorded per run and their ratio per
comparison (kept within 5 %).

Every run selects its adapters on val and evaluates them once on test. Seeds are paired: the same
seed fixes the image subset, the initialisation and the mixing draws on both sides; each
difference (arm - baseline, the baseline being the first arm named above) gets a Student-t 95 %
confidence interval over seeds. A run shared by two comparisons (the default arm) is run once.
Runs are cells of ``mmsearch.evaluation.cells``: one result file each in ``--work-dir``, so a
killed run resumes where it stopped.

    python bench/bench_fusemix_evidence.py --workers 2            # the full measurement (1-4: 74 min on 2 cores)
    python bench/bench_fusemix_evidence.py --quick --work-dir /tmp/fe --out /tmp/fe.json
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_fusemix_scenes as scenes  # noqa: E402  (bench/ is not a package)

REPO = scenes.REPO
RESULTS = REPO / "bench" / "results" / "fusemix_evidence.json"
COMPARISONS = ("pairing", "mixup", "encoders", "milnce", "tuned")
ENCODER_ARMS = {  # arm -> (image encoder, text encoder)
    "pretrained": ("efficientnet_lite0", "minilm"),
    "random_image": ("efficientnet_lite0_random0", "minilm"),
    "random_text": ("efficientnet_lite0", "minilm_random0"),
    "random_both": ("efficientnet_lite0_random0", "minilm_random0"),
}
QUICK_DATA = ("source.scenes.num_scenes=40", "image.image_size=64")
QUICK_TUNED = ("optim.lr=4.0e-3",)  # a stand-in for a tuned config: exercises the path only
REPORTED = ("rsum", "i2t_r1", "t2i_r1")


# -- planning (parent process) --------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _config(overrides: tuple[str, ...]):
    from mmsearch.config import load_config
    from mmsearch.recipes.fusemix.config import FuseMixConfig

    return load_config(FuseMixConfig, scenes.RECIPE_CONFIG, list(overrides))


@functools.lru_cache(maxsize=None)
def adapter_flops_per_row(overrides: tuple[str, ...]) -> float:
    """Training FLOPs of the adapters per row in the loss: 6 x Linear MACs (forward + backward)."""
    import torch

    from mmsearch.adapters import FuseMixModel

    cfg = _config(overrides)
    model = FuseMixModel.from_config(cfg.model, cfg.model.x_dim, cfg.model.y_dim)
    return 6.0 * sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def rows_per_step(overrides: tuple[str, ...], batch: int, alpha: float) -> int:
    """Rows the adapters see per step: B, or B/2 for ``halves`` with mixing on (mirrors mix_latent_pairs)."""
    return batch // 2 if _config(overrides).loss.mixup_mode == "halves" and alpha > 0 else batch


def arm_batch(pairs: int, arm: Mapping[str, Any], min_steps: int) -> int:
    """The arm's input batch on ``pairs`` training pairs (capped as in bench_fusemix_scenes.schedule)."""
    return scenes.schedule(pairs, _config(tuple(arm["overrides"])).train.batch_size, 1, min_steps)[0]


def flops_per_step(arm: Mapping[str, Any], batch: int) -> float:
    overrides = tuple(arm["overrides"])
    return rows_per_step(overrides, batch, arm["alpha"]) * adapter_flops_per_row(overrides)


def plan_steps(pairs: int, arm: Mapping[str, Any], budget: float, min_steps: int) -> tuple[int, int]:
    """(batch, steps) of an arm: whole epochs whose adapter FLOPs are closest to ``budget``."""
    batch = arm_batch(pairs, arm, min_steps)
    per_epoch = pairs // batch
    epochs = max(1, round(budget / flops_per_step(arm, batch) / per_epoch))
    return batch, epochs * per_epoch


def comparison_arms(args: argparse.Namespace, name: str) -> tuple[list[float], dict[str, dict[str, Any]]]:
    """(fractions, arms) of one comparison; the first arm is the baseline the others are compared with."""
    base = list(args.recipe)

    def arm(alpha: float = 1.0, extra: tuple[str, ...] = (), encoders: str = "pretrained") -> dict[str, Any]:
        # An arm's alpha is applied after its overrides, so one named among them (a tuned config's) is the arm's alpha.
        named = [o.split("=", 1)[1] for o in extra if o.split("=", 1)[0].strip() == "loss.mixup_alpha"]
        return {"alpha": float(named[-1]) if named else alpha, "overrides": [*base, *extra], "encoders": encoders}

    if name == "pairing":
        doubled = f"train.batch_size={2 * args.batch_size}"
        return args.pairing_fractions, {"permutation": arm(extra=("loss.mixup_mode=permutation",)),
                                        "halves": arm(extra=("loss.mixup_mode=halves", doubled))}
    if name == "mixup":
        return args.mixup_fractions, {f"alpha={a:g}": arm(alpha=a) for a in [0.0, *args.alphas]}
    if name == "encoders":
        return [1.0], {e: arm(encoders=e) for e in args.encoder_arms}
    if name == "milnce":
        return args.milnce_fractions, {"infonce": arm(extra=("loss.multi_positive=false",)),
                                       "milnce": arm(extra=("loss.multi_positive=true",))}
    return [1.0], {"default": arm(), "tuned": arm(extra=tuple(args.tuned))}


def run_name(root: str, fraction: float, arm: Mapping[str, Any], steps: int, batch: int, seed: int) -> str:
    """Named by everything that determines the run (the resolved config), so a run two comparisons share runs once."""
    from mmsearch.config import config_to_dict

    cfg = config_to_dict(_config((*arm["overrides"], f"loss.mixup_alpha={arm['alpha']}", f"train.batch_size={batch}")))
    key = json.dumps([root, fraction, steps, cfg], sort_keys=True, default=str)
    return f"run-{hashlib.sha1(key.encode()).hexdigest()[:12]}-s{seed}"


# -- one run (in a pool process) --------------------------------------------------------------------


def run_arm(cell, settings: Mapping[str, Any], work: str) -> dict[str, Any]:
    """One training run of ``bench_fusemix_scenes.run_cell`` at the planned batch and steps."""
    p = cell.params
    overrides = [*p["overrides"], f"train.batch_size={p['batch']}"]
    run = scenes.run_cell(p["root"], scenes.Cell(p["fraction"], p["alpha"], p["seed"]), overrides, p["steps"],
                          settings["min_steps_per_epoch"])
    run["adapter_flops"] = run["loss_rows"] * adapter_flops_per_row(tuple(overrides))
    return {**run, "root": p["root"], "overrides": overrides, "planned_steps": p["steps"]}


# -- encoder quality --------------------------------------------------------------------------------


def probe_encoders(root: str, data_overrides: list[str]) -> dict[str, Any]:
    """Linear-probe accuracy (scene colours and shapes present) of a data set's image and text latents."""
    from mmsearch.config import load_config
    from mmsearch.data.dataset_root import DatasetRoot
    from mmsearch.data.precompute.config import PrecomputeConfig
    from mmsearch.data.store import open_store
    from mmsearch.evaluation.paired import linear_probe_accuracy, scene_attribute_labels

    scene_cfg = load_config(PrecomputeConfig, None, data_overrides).source.scenes
    data = {}
    for split in ("train", "test"):
        cols = open_store(DatasetRoot(root).split_uri(split)).table("pairs").read_all(["image_id", "image", "text"])
        labels, _ = scene_attribute_labels(list(cols["image_id"]), scene_cfg)
        data[split] = (cols, labels)
    out = {}
    for side in ("image", "text"):
        import torch

        (tr, ytr), (te, yte) = data["train"], data["test"]
        out[side] = linear_probe_accuracy(torch.from_numpy(tr[side]), ytr, torch.from_numpy(te[side]), yte)
    return out


# -- summary ---------------------------------------------------------------------------------------


def summarize(plan: list[dict[str, Any]], results: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per comparison and fraction: each arm's test metrics and FLOPs, and arm - baseline per seed with a CI."""
    from mmsearch.evaluation.oracle import mean_std
    from mmsearch.evaluation.paired import paired_difference

    out = []
    for entry in plan:
        runs = {arm: {seed: results[name] for seed, name in names.items()} for arm, names in entry["runs"].items()}
        baseline = next(iter(runs))
        arms = {}
        base_flops = mean_std([r["adapter_flops"] for r in runs[baseline].values()])["mean"]
        for arm, by_seed in runs.items():
            flops = mean_std([r["adapter_flops"] for r in by_seed.values()])["mean"]
            arms[arm] = {"test": {m: mean_std([r["test"][m] for r in by_seed.values()]) for m in REPORTED},
                         "val_rsum": mean_std([r["val"]["rsum"] for r in by_seed.values()]),
                         "adapter_flops": flops, "flops_ratio_to_baseline": flops / base_flops,
                         "steps": sorted({r["steps"] for r in by_seed.values()}),
                         "batch_size": sorted({r["batch_size"] for r in by_seed.values()})}
            if arm != baseline:
                arms[arm]["difference_vs_baseline"] = {m: paired_difference(
                    {s: r["test"][m] for s, r in runs[baseline].items()}, {s: r["test"][m] for s, r in by_seed.items()})
                    for m in REPORTED}
        out.append({"comparison": entry["comparison"], "fraction": entry["fraction"], "baseline": baseline, "arms": arms})
    return out


def print_summary(summary: list[dict[str, Any]]) -> None:
    print("\ntest rsum, mean +- std over seeds; arm - baseline with its 95 % CI (paired by seed); adapter FLOPs / baseline's")
    for entry in summary:
        print(f"{entry['comparison']} at {entry['fraction']:g} of the images (baseline {entry['baseline']}):")
        for arm, a in entry["arms"].items():
            rsum = a["test"]["rsum"]
            line = f"  {arm:>14}: {rsum['mean']:6.1f} +- {rsum['std']:4.1f}  flops x{a['flops_ratio_to_baseline']:.3f}"
            if "difference_vs_baseline" in a:
                d = a["difference_vs_baseline"]["rsum"]
                line += f"  diff {d['mean']:+6.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}] wins {d['wins']}/{d['n']}"
            print(line, flush=True)


# -- driver ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comparisons", nargs="+", choices=COMPARISONS, default=list(COMPARISONS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=400, help="the baseline arm's steps; sets each comparison's FLOP budget")
    parser.add_argument("--batch-size", type=int, default=512, help="the recipe's batch (pairing: halves gets twice it)")
    parser.add_argument("--min-steps-per-epoch", type=int, default=4)
    parser.add_argument("--pairing-fractions", type=float, nargs="+", default=[1.0, 0.2])
    parser.add_argument("--mixup-fractions", type=float, nargs="+", default=[1.0, 0.5, 0.2, 0.1, 0.05])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.2, 0.5, 1.0, 2.0], help="compared with alpha 0")
    parser.add_argument("--milnce-fractions", type=float, nargs="+", default=[1.0, 0.2])
    parser.add_argument("--encoder-arms", nargs="+", choices=list(ENCODER_ARMS), default=list(ENCODER_ARMS))
    parser.add_argument("--tuned", action="append", default=[], metavar="KEY=VALUE", help="the tuned config's recipe overrides")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="data set override (PrecomputeConfig)")
    parser.add_argument("--set", dest="recipe", action="append", default=[], metavar="KEY=VALUE", help="recipe override, every arm")
    parser.add_argument("--backend", choices=("local", "ray"), default="local")
    parser.add_argument("--quick", action="store_true", help="every comparison at toy size (40 scenes, 64 px, 2 seeds, a tiny adapter)")
    parser.add_argument("--work-dir", type=Path, default=None, help="cell results (default runs/bench_fusemix_evidence[_quick])")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.batch_size = args.seeds[:2], 16, 64
        args.recipe = [*scenes.QUICK_RECIPE, *args.recipe]
        args.data = [*QUICK_DATA, *args.data]
        args.pairing_fractions, args.mixup_fractions, args.milnce_fractions = [1.0], [1.0], [1.0]
        args.alphas, args.encoder_arms = [1.0], ["pretrained", "random_both"]
        args.tuned = args.tuned or list(QUICK_TUNED)
    if "tuned" in args.comparisons and not args.tuned:
        args.comparisons = [c for c in args.comparisons if c != "tuned"]
        print("no --tuned overrides: the tuned comparison is skipped (see bench/README.md for the tuning command)")
    fractions = args.pairing_fractions + args.mixup_fractions + args.milnce_fractions
    if any(not 0 < f <= 1 for f in fractions) or any(a <= 0 for a in args.alphas) or len(args.seeds) < 1:
        parser.error("fractions must be in (0, 1], alphas > 0, and at least one seed")
    args.recipe = [*args.recipe, f"train.batch_size={args.batch_size}"]
    args.work_dir = args.work_dir or REPO / "runs" / ("bench_fusemix_evidence_quick" if args.quick else "bench_fusemix_evidence")
    return args


def build_plan(args: argparse.Namespace, roots: Mapping[str, str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The comparisons' entries (arm -> seed -> run name) and the unique runs (name -> cell params)."""
    trains = {e: scenes.load_split(r, "train") for e, r in roots.items()}
    plan, cells = [], {}
    for comparison in args.comparisons:
        fractions, arms = comparison_arms(args, comparison)
        for fraction in fractions:
            entry = {"comparison": comparison, "fraction": fraction, "runs": {}}
            for seed in args.seeds:
                sizes = {e: len(scenes.image_subset(t, fraction, seed)["image_id"]) for e, t in trains.items()}
                first = next(iter(arms.values()))  # the baseline: --steps steps set the budget
                budget = args.steps * flops_per_step(first, arm_batch(sizes[first["encoders"]], first, args.min_steps_per_epoch))
                for arm_name, arm in arms.items():
                    batch, steps = plan_steps(sizes[arm["encoders"]], arm, budget, args.min_steps_per_epoch)
                    root = roots[arm["encoders"]]
                    name = run_name(root, fraction, arm, steps, batch, seed)
                    cells[name] = {"root": root, "fraction": fraction, "alpha": arm["alpha"], "seed": seed,
                                   "overrides": arm["overrides"], "batch": batch, "steps": steps}
                    entry["runs"].setdefault(arm_name, {})[seed] = name
            plan.append(entry)
    return plan, cells


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mmsearch.evaluation.cells import Cell, run_cells
    from mmsearch.io import atomic_write_json
    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, argv)
    start = time.perf_counter()
    needed = {"pretrained"} | (set(args.encoder_arms) if "encoders" in args.comparisons else set())
    roots, probes, cards = {}, {}, {}
    for arm in [e for e in ENCODER_ARMS if e in needed]:
        image, text = ENCODER_ARMS[arm]
        overrides = [*args.data, f"image.name={image}", f"text.name={text}"]
        roots[arm] = scenes.build_dataset(overrides, args.backend)
        cards[arm] = scenes._dataset_card(roots[arm])
        if "encoders" in args.comparisons:
            probes[arm] = probe_encoders(roots[arm], overrides)
    data_s = time.perf_counter() - start
    plan, cells = build_plan(args, roots)
    print(f"{len(plan)} comparison entries, {len(cells)} distinct runs on {args.workers} workers", flush=True)
    results = run_cells([Cell(n, p) for n, p in cells.items()], run_arm, {"min_steps_per_epoch": args.min_steps_per_epoch},
                        args.work_dir, args.workers)
    summary = summarize(plan, results)
    print_summary(summary)
    if probes:
        print("\nlinear-probe accuracy on the scenes' colours and shapes (test; majority-class in brackets):")
        for arm, p in probes.items():
            print(f"  {arm:>14}: image {p['image']['accuracy']:.3f} ({p['image']['majority_accuracy']:.3f})  "
                  f"text {p['text']['accuracy']:.3f} ({p['text']['majority_accuracy']:.3f})")
    report = {
        "benchmark": "fusemix_evidence", "quick": args.quick, "command": provenance.command,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        "datasets": {arm: {"root": roots[arm], "encoders": ENCODER_ARMS[arm], **cards[arm]} for arm in roots},
        "encoder_probes": probes, "comparisons": summary, "plan": plan,
        "runs": {name: results[name] for name in sorted(cells)},
        "wall_s": {"total": time.perf_counter() - start, "datasets": data_s},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "provenance": provenance.block(),
    }
    atomic_write_json(args.out, report)
    print(f"\n{len(cells)} runs; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
