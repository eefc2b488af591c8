"""The fusion-space search against the oracle (bench/bench_fusion_search.py) in --quick mode: a tiny
oracle, a fusion search per strategy, its pick retrained with the oracle's seeds and compared with
the oracle's anchors; a rerun searches and trains nothing."""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_fusion_search as fusion_bench  # noqa: E402
from mmsearch.nas import FusionSpec  # noqa: E402
from test_bench_provenance import check_provenance  # noqa: E402

pytestmark = pytest.mark.slow


def test_quick_fusion_search_retrains_its_pick_with_the_oracles_seeds_and_compares_with_its_anchors(tmp_path, capsys):
    argv = ["--quick", "--tasks", "vg", "--strategies", "darts", "--search-seeds", "1", "--workers", "1",
            "--work-dir", str(tmp_path)]
    assert fusion_bench.main(argv) == 0
    report = json.loads((tmp_path / "fusion_search_vg.json").read_text())
    oracle = json.loads((tmp_path / "oracle" / "arch_oracle_vg.json").read_text())
    check_provenance(report, "bench_fusion_search.py", argv)
    archs = {a["label"]: a for a in oracle["archs"]}

    # anchors: MCAN, the hand-designed pattern best on val, the best of all on val
    anchors = report["anchors"]
    assert anchors["mcan"]["test"] == archs["mcan"]["test"]
    patterns = [a for a in oracle["archs"] if a["label"].startswith("fusion_")]
    assert anchors["best_pattern"]["label"] == max(patterns, key=lambda a: a["val"]["mean"])["label"]
    assert anchors["oracle_best"]["label"] == max(oracle["archs"], key=lambda a: a["val"]["mean"])["label"]
    assert report["noise_std"] == pytest.approx(statistics.fmean(a["test"]["std"] for a in oracle["archs"]))

    # one pick: a fusion spec from the search, retrained with every oracle seed, compared on test
    (pick,) = report["picks"]
    spec = FusionSpec.from_dict(pick["spec"])
    assert pick["arch"].startswith("searched: ") and len(spec.blocks) > 0
    cells = [json.loads(p.read_text()) for p in sorted((tmp_path / "cells").glob("retrain_vg_darts_seed0_train*.json"))]
    assert len(cells) == len(oracle["settings"]["seeds"]) == pick["test"]["n"]
    assert sorted(pick["test"]["values"]) == sorted(c["test"]["vg_acc"] for c in cells)
    for name, anchor in anchors.items():
        diff = pick["test"]["mean"] - anchor["test"]["mean"]
        assert pick["vs"][name]["test_diff"] == pytest.approx(diff)
        assert pick["vs"][name]["beats"] == (diff > report["noise_std"])
    assert report["pipeline_pick"]["darts"]["arch"] == pick["arch"]
    assert "| darts | 0 | searched: " in capsys.readouterr().out

    # a rerun finds every cell done
    assert fusion_bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "1 cells: 1 already done, 0 to run" in out and f"{len(cells)} cells: {len(cells)} already done, 0 to run" in out
