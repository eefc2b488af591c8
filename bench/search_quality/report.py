"""The search-quality benchmark's report: the markdown tables and the printed summary."""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from .settings import SHORT


PREFERRED = {
    "vqa": ["vqa_acc", "vqa_acc_yes_no", "vqa_acc_number", "vqa_acc_other"],
    "vg": ["vg_acc", "vg_miou"],
    "itm": ["itm_i2t_r1", "itm_i2t_r5", "itm_i2t_r10", "itm_t2i_r1", "itm_t2i_r5", "itm_t2i_r10", "itm_rsum"],
}


def columns(task: str, keys: Iterable[str]) -> list[str]:
    """Table columns: the task's main metrics, then per-family accuracies."""
    keys = set(keys)
    main = [k for k in PREFERRED[task] if k in keys]
    families = sorted(k for k in keys if "_family_" in k)
    return main + families


def _header(key: str) -> str:
    return (key.replace("vqa_acc_family_", "").replace("vg_acc_family_", "").replace("vqa_acc_", "").replace("itm_", "")
            .replace("vqa_acc", "acc").replace("vg_acc", "acc@0.5").replace("vg_miou", "mIoU"))


def markdown(report: Mapping[str, Any]) -> str:
    settings, figures, run = report["settings"], report["tasks"], report["run"]
    lines = ["## Search quality: searched vs MCAN vs random architectures, retrained", ""]
    lines += [
        f"Embedded benchmark (`{'synthetic --quick' if settings['quick'] else 'ensure_dataset(): 1500 scenes'}`), "
        f"depth {settings['depths'][0]} + {settings['depths'][1]} blocks, H={report['width']['hidden']} "
        f"({report['width']['heads']} heads), pools enc {{SA, FFN}}, dec {{SA, RSA, GA, FFN}}. "
        f"Searches: {', '.join(settings['strategies'])}, seeds {settings['search_seeds']}, uniform initial "
        "architecture weights, the settings of `configs/search/<task>.yaml` otherwise; each seed's "
        "architecture is the argmax after the last epoch. Retraining from scratch with the same "
        "width, depth and budget (`configs/train/<task>.yaml`, shorter schedule), training seed 0; "
        f"MCAN with training seeds {settings['noise_seeds']} (the retraining noise). Test split metrics, %.",
        "",
        f"Command: `{run['command']}`{_at_commit(report)}. Machine: {run['machine']}; wall time {run['wall_s'] / 60:.1f} min "
        f"({run['cell_s'] / 60:.1f} process-min in {run['cells']} cells, {run['workers']} workers x 1 torch thread); "
        f"1-min load average {run['load_1m']['min']:.1f}-{run['load_1m']['max']:.1f} (mean {run['load_1m']['mean']:.1f}) "
        "while it ran (shared machine: accuracy does not depend on load, times do).",
        "",
    ]
    for task, fig in figures.items():
        metric = fig["metric"]
        cols = columns(task, fig["summary"][next(iter(fig["summary"]))].keys())
        lines += [f"### {task.upper()}", "", "| architecture | " + " | ".join(_header(c) for c in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for key, row in fig["rows"].items():
            lines.append(f"| {row['label']} s{row['seed']} `{row['arch']}` | " + " | ".join(f"{row['test'].get(c, math.nan):.1f}" for c in cols) + " |")
        for group, values in fig["summary"].items():
            if values[metric]["n"] > 1:
                lines.append(f"| **{group}** (n={values[metric]['n']}) | "
                             + " | ".join(f"{values[c]['mean']:.1f} ± {values[c]['std']:.1f}" for c in cols) + " |")
        lines += ["", f"Retraining noise (MCAN, std over training seeds): {fig['retrain_noise_std']:.2f} points of {_header(metric)}. "
                  + "; ".join(f"{g} - random mean: {d:+.2f}" for g, d in fig["searched_minus_random"].items()) + "; "
                  + "; ".join(f"{g} - MCAN mean: {d:+.2f}" for g, d in fig["searched_minus_mcan"].items()) + ".", ""]
        for strategy, s in fig["search"].items():
            freq = s["op_frequency"]
            lines += [f"Search ({strategy}):", "", "| | " + " | ".join(f"seed {i}" for i in range(len(s["archs"]))) + " |",
                      "|---|" + "---|" * len(s["archs"]),
                      "| derived architecture | " + " | ".join(f"`{a}`" for a in s["archs"]) + " |",
                      f"| supernet val {_header(metric)} (last epoch) | " + " | ".join(f"{v:.1f}" for v in s["search_val_final"]) + " |",
                      f"| retrained val {_header(metric)} | " + " | ".join(_fmt(v) for v in s["retrained_val"]) + " |",
                      f"| retrained test {_header(metric)} | " + " | ".join(_fmt(v) for v in s["retrained_test"]) + " |",
                      "| Kendall tau, supernet estimate vs retrained test, all retrained archs | "
                      + " | ".join(_fmt(t, 2) for t in s["proxy"]["kendall_tau"]) + " |",
                      "", "| op | " + " | ".join(f"seed {i}" for i in range(len(s["archs"]))) + " | mean | uniform |",
                      "|---|" + "---:|" * (len(s["archs"]) + 2)]
            for chain in ("enc", "dec"):
                for op, f in freq[chain].items():
                    lines.append(f"| {chain} {SHORT.get(op, op)} | " + " | ".join(str(c) for c in f["counts"]) + f" | {f['mean']:.2f} | {f['uniform']:.2f} |")
            blocks = "; ".join(f"{i + 1}: " + ", ".join(f"{SHORT.get(op, op)}x{n}" for op, n in b.items())
                               for i, b in enumerate(s["decoder_blocks"]))
            ag, ent = s["agreement"], s["entropy"]
            lines += ["", f"Decoder block choices over seeds: {blocks}.", "",
                      f"Seed-to-seed agreement (fraction of blocks with the same op, mean over pairs): {ag['mean']:.2f} "
                      f"(encoder {ag['enc_mean']:.2f}, decoder {ag['dec_mean']:.2f}); chance given the pools: {ag['chance']:.2f} "
                      f"(encoder {ag['chance_enc']:.2f}, decoder {ag['chance_dec']:.2f}). Final mean per-block entropy: "
                      f"encoder {ent['enc_mean']['mean']:.3f} of max {s['entropy_max']['enc']:.3f} nats, decoder "
                      f"{ent['dec_mean']['mean']:.3f} of max {s['entropy_max']['dec']:.3f} (normalised {ent['normalized_mean']['mean']:.2f}).", ""]
    return "\n".join(lines)


def _at_commit(report: Mapping[str, Any]) -> str:
    """`` at commit abc (cells: ...)`` from the report's provenance (empty for reports without one)."""
    commit = report.get("provenance", {}).get("commit")
    if commit is None:
        return ""
    dirty = " (uncommitted changes)" if report["provenance"].get("dirty") else ""
    cells = report["run"].get("cell_commits", {})
    other = sum(n for c, n in cells.items() if c.split(" ")[0] != commit)
    return f" at commit `{commit[:12]}`{dirty}" + (f" ({other} of the cells from other commits: {cells})" if other else "")


INTERPRETATION = "### Interpretation"


def kept_interpretation(previous: str) -> str:
    """The hand-written ``### Interpretation`` section (to the end) of a previous markdown file, or ""."""
    at = previous.find("\n" + INTERPRETATION + "\n")
    return previous[at + 1:] if at >= 0 else ""


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def print_summary(figures: Mapping[str, Any]) -> None:
    for task, fig in figures.items():
        metric = fig["metric"]
        print(f"\n== {task}: test {metric}")
        for group, values in fig["summary"].items():
            print(f"  {group:22s} {values[metric]['mean']:7.2f} ± {values[metric]['std']:5.2f} (n={values[metric]['n']})")
        for strategy, s in fig["search"].items():
            print(f"  {strategy}: agreement {s['agreement']['mean']:.2f} (chance {s['agreement']['chance']:.2f}), "
                  f"kendall tau {s['proxy']['kendall_tau_mean']:.2f}, archs {s['archs']}")
