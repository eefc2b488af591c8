"""``bench/bench_scene_baselines.py --quick`` end to end on a small precomputed scenes data set:
every baseline x task runs in the worker pool and every table cell is filled."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_bench_provenance import check_provenance
from test_precompute_common import shared_scenes

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "bench_scene_baselines.py"


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_scene_baselines", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_benchmark_fills_every_table_cell(tmp_path_factory, tmp_path):
    root = shared_scenes(tmp_path_factory).root
    out = tmp_path / "scene_baselines.json"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    args = ["--quick", "--root", root, "--out", str(out)]
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    check_provenance(report, "bench_scene_baselines.py", args)
    bench = bench_module()
    assert report["dataset"]["root"] == root and report["settings"]["quick"] is True
    assert report["settings"]["workers"] == 2 and report["settings"]["torch_threads_per_worker"] == 1
    assert report["wall_s"]["total"] > 0 and "load_avg_1m" in report and report["machine"]["cores"]
    for task in bench.TASKS:
        rows = report["results"][task]
        assert set(rows) == {*bench.BASELINE_NAMES, bench.REFERENCE}
        for name in bench.BASELINE_NAMES:
            test = rows[name]["test"]
            missing = [key for _, key in bench.COLUMNS[task] if key not in test]
            assert not missing, f"{name} {task} lacks {missing}"
            assert all(0.0 <= test[key] <= 100.0 for _, key in bench.COLUMNS[task])
            assert 1 <= rows[name]["best_epoch"] <= report["settings"]["budget"]["epochs"]
            assert len(rows[name]["history"]) == report["settings"]["budget"]["epochs"]
        reference = rows[bench.REFERENCE]["test"]
        wanted = [key for _, key in bench.COLUMNS[task]] if task != "vg" else ["vg_acc"]
        assert all(key in reference for key in wanted)
    # the image-only model scores a caption and its hard negative alike; the reference is exact
    assert report["results"]["itm"]["image_only"]["test"]["itm_pair_acc"] == 50.0
    assert report["results"]["itm"]["reference"]["test"]["itm_pair_acc"] == 50.0
    # the printed tables hold a row per model and task
    for label in ("majority answer (train)", "chance", "random region", "text only", "image only", "fused: MCAN-small"):
        assert f"| {label} |" in proc.stdout
    assert proc.stdout.count("| text only |") == 3
