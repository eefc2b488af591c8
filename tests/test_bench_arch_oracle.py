"""The architecture-oracle benchmark (bench/bench_arch_oracle.py) in --quick mode: every cell,
the oracle file that mmsearch.evaluation scores against, and a resumed run that trains nothing."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_arch_oracle as bench  # noqa: E402

pytestmark = pytest.mark.slow


def test_quick_oracle_is_complete_scoreable_and_resumes_without_training(tmp_path, capsys):
    from mmsearch.evaluation import load_oracle, score_estimator

    argv = ["--quick", "--tasks", "vqa", "--archs", "3", "--seeds", "2", "--workers", "1", "--work-dir", str(tmp_path)]
    assert bench.main(argv) == 0
    header, oracle = load_oracle(tmp_path / "arch_oracle_vqa.json")
    raw = json.loads((tmp_path / "arch_oracle_vqa.json").read_text())
    assert header["task"] == "vqa" and header["metric"] == "vqa_acc"
    assert [a.label for a in oracle] == ["mcan", "mmnas_prior", "random0"]
    assert raw["archs"][0]["arch"] == "SA FFN | SA GA FFN" and raw["archs"][1]["arch"] == "SA FFN | RSA GA FFN"
    for entry in raw["archs"]:
        assert entry["val"]["n"] == 2 and len(entry["val_history"]) == 2 and all(len(h) == 2 for h in entry["val_history"])
        assert entry["val"]["values"] == [h[-1] for h in entry["val_history"]]  # the final epoch's val, per seed
        assert entry["parameters"] > 0 and entry["train_cpu_s"]["total"] > 0
    scores = score_estimator(oracle, {"mcan": 1.0, "mmnas_prior": 2.0, "random0": 3.0}, k=2)
    assert scores["top1"] == "random0" and -1.0 <= scores["kendall_tau"] <= 1.0

    cells = sorted((tmp_path / "cells").glob("*.json"))
    assert len(cells) == 6
    stamps = {p.name: p.stat().st_mtime_ns for p in cells}
    capsys.readouterr()
    assert bench.main(argv) == 0  # resumed: every cell has its result file
    assert "6 cells: 6 already done, 0 to run" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").glob("*.json")} == stamps
    assert json.loads((tmp_path / "arch_oracle_vqa.json").read_text())["archs"] == raw["archs"]
    with pytest.raises(SystemExit, match="other settings"):
        bench.main([*argv[:-2], "--work-dir", str(tmp_path), "--sample-seed", "1"])
