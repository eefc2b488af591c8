"""The FuseMix scenes benchmark end to end on a tiny data set: real encoders, real recipe, real recall."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_fusemix_scenes as bench  # noqa: E402  (bench/ is not a package)

from mmsearch.metrics.retrieval import chance_recall  # noqa: E402
from test_bench_provenance import check_provenance  # noqa: E402


def test_schedule_keeps_the_step_budget_and_caps_the_batch():
    assert bench.schedule(5250, 512, 600, 4) == (512, 60)  # 10 steps per epoch
    assert bench.schedule(1050, 512, 600, 4) == (262, 150)  # batch capped: 4 steps per epoch
    batch, epochs = bench.schedule(210, 512, 60, 4)
    assert (batch, epochs) == (52, 15) and (210 // batch) * epochs >= 60


def test_image_subset_keeps_every_caption_of_the_chosen_images():
    ids = torch.arange(10).repeat_interleave(3)
    split = {"image": torch.randn(30, 4), "text": torch.randn(30, 2), "image_id": ids}
    sub = bench.image_subset(split, 0.3, seed=1)
    assert torch.unique(sub["image_id"]).numel() == 3 and len(sub["image_id"]) == 9
    assert torch.equal(bench.image_subset(split, 0.3, seed=1)["image_id"], sub["image_id"])  # seeded
    assert bench.image_subset(split, 1.0, seed=1) is split


def test_summary_pairs_mixup_with_no_mixup_by_seed():
    def run(alpha, seed, rsum):
        test = {m: rsum for m in bench.METRICS}
        return {"fraction": 1.0, "alpha": alpha, "seed": seed, "train_images": 10, "train_pairs": 50,
                "batch_size": 8, "epochs": 3, "best_epoch": 2, "test": test, "val": test}

    runs = [run(0.0, 0, 100.0), run(0.0, 1, 110.0), run(1.0, 0, 104.0), run(1.0, 1, 108.0)]
    none, mixup = bench.summarize(runs)
    assert none["test"]["rsum"]["mean"] == pytest.approx(105.0) and "delta_vs_no_mixup" not in none
    assert mixup["delta_vs_no_mixup"]["rsum"]["mean"] == pytest.approx(1.0)  # (+4 - 2) / 2
    assert mixup["delta_vs_no_mixup"]["rsum"]["std"] == pytest.approx(18 ** 0.5)
    assert mixup["mixup_wins"] == 1


@pytest.mark.slow
def test_quick_benchmark_on_60_scenes_beats_chance(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEARCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "scenes.json"
    args = ["--quick", "--data", "source.scenes.num_scenes=60", "--fractions", "1.0", "0.5", "--workers", "2", "--out", str(out)]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    check_provenance(report, "bench_fusemix_scenes.py", args)

    assert report["quick"] and report["settings"]["seeds"] == [0]
    assert report["dataset"]["splits"]["train"]["pairs"] == 42 * 5  # 70% of 60 scenes, 5 captions each
    assert {(r["fraction"], r["alpha"]) for r in report["runs"]} == {(f, a) for f in (1.0, 0.5) for a in (0.0, 1.0)}
    ids = torch.arange(12).repeat_interleave(5)  # the test split: 12 images x 5 captions
    expected = chance_recall(12, 60, ids)
    assert all(report["chance"][k] == pytest.approx(v) for k, v in expected.items())

    half = [r for r in report["runs"] if r["fraction"] == 0.5]
    assert all(r["train_images"] == 21 and r["train_pairs"] == 105 for r in half)
    for run in report["runs"]:
        assert set(run["test"]) == set(bench.METRICS) and 1 <= run["best_epoch"] <= run["epochs"]
        assert run["steps"] >= 60  # the step budget, whatever the data size
    for cell in report["cells"]:
        assert cell["test"]["rsum"]["n"] == 1
        # 12 test images: chance rsum is 239 of 600; a trained model must do clearly better.
        assert cell["test"]["rsum"]["mean"] > report["chance"]["rsum"] + 30, cell
    assert report["cells"][1]["delta_vs_no_mixup"]["rsum"]["n"] == 1
    assert report["wall_s"]["training"] > 0 and report["machine"]["logical_cpus"] >= 1
