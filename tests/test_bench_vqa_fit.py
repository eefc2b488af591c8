"""The VQA fit-and-generalise benchmark (bench/bench_vqa_fit.py) in --quick mode: one run per
architecture and N:EPOCHS:DROPOUT[:GROUNDING] setting, a curve per epoch with training and val
accuracy (overall and per family) and val pointing, a summary that agrees with the curves, and a
resumed run that trains nothing."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_vqa_fit as fit_bench  # noqa: E402
from test_bench_provenance import check_provenance  # noqa: E402


def test_quick_runs_give_per_epoch_curves_a_consistent_summary_and_resume_without_training(tmp_path, capsys):
    argv = ["--quick", "--workers", "1", "--work-dir", str(tmp_path), "--archs", "mcan", "random1"]
    assert fit_bench.main(argv) == 0
    report = json.loads((tmp_path / "vqa_fit.json").read_text())
    check_provenance(report, "bench_vqa_fit.py", argv)
    runs = [(r["arch"], r["train_questions"], r["epochs"], r["dropout"], r["grounding"]) for r in report["runs"]]
    assert runs == [(a, *run) for a in ("mcan", "random1") for run in ((8, 3, 0.0, 0.0), (16, 2, 0.1, 1.0))]
    archs = report["settings"]["archs"]
    assert archs["mcan"]["dec"] == [["self_att"], ["guided_att"], ["feed_forward"]]  # MCAN at the quick depths
    assert archs["random1"] != archs["mcan"]
    for row, (name, curve) in zip(report["runs"], report["curves"].items()):
        assert name == fit_bench.cell_name(row["arch"], row)
        assert [e["epoch"] for e in curve] == list(range(1, row["epochs"] + 1))
        for epoch in curve:
            assert 0.0 <= epoch["train_acc"] <= 100.0 and 0.0 <= epoch["val_acc"] <= 100.0
            assert epoch["val_by_family"] and all(0.0 <= v <= 100.0 for v in epoch["val_by_family"].values())
            assert 0.0 <= epoch["val_pointing"] <= 100.0  # the generated scenes name their referents
        best = max(curve, key=lambda e: e["val_acc"])
        assert (row["best_val_acc"], row["best_val_epoch"]) == (best["val_acc"], best["epoch"])
        assert row["final_train_acc"] == curve[-1]["train_acc"] and row["final_val_acc"] == curve[-1]["val_acc"]
        assert row["train_minus_val_final"] == pytest.approx(curve[-1]["train_acc"] - curve[-1]["val_acc"])
        assert row["final_val_pointing"] == curve[-1]["val_pointing"]
    capsys.readouterr()

    assert fit_bench.main(argv) == 0  # resumed: both cells are done
    assert "0 to run" in capsys.readouterr().out
    assert json.loads((tmp_path / "vqa_fit.json").read_text())["curves"] == report["curves"]


@pytest.mark.parametrize("text", ["256:60", "x:1:0", "256:0:0", "256:1:1.0", "256:1:-0.1", "256:1:0:-1", "256:1:0:1:2"])
def test_a_bad_run_setting_is_named(text):
    with pytest.raises(argparse.ArgumentTypeError, match="N:EPOCHS:DROPOUT|need N >= 1"):
        fit_bench.parse_run(text)


def test_an_unknown_architecture_is_named():
    with pytest.raises(SystemExit, match="unknown architecture.*'nope'"):
        fit_bench.architectures(["mcan", "nope"], (4, 6))
