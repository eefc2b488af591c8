"""The architecture oracle (bench/bench_arch_oracle.py) and the estimator benchmark
(bench/bench_estimators.py) in --quick mode, in one run: the estimator benchmark builds a tiny
oracle, runs one-shot searches and the short-training proxy and scores them against it; the oracle
file is complete, and a resumed oracle run trains nothing."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_arch_oracle as oracle_bench  # noqa: E402
import bench_estimators as estimator_bench  # noqa: E402
from mmsearch.nas import PATTERNS  # noqa: E402
from mmsearch.evaluation.oracle import rank_average  # noqa: E402
from test_bench_provenance import check_provenance  # noqa: E402

pytestmark = pytest.mark.slow


def test_quick_oracle_and_estimators_are_complete_scored_and_resume_without_training(tmp_path, capsys):
    from mmsearch.evaluation import load_oracle, score_estimator

    argv = ["--quick", "--tasks", "vqa", "--strategies", "proxyless", "--fewshot", "proxyless", "--search-seeds", "2",
            "--short-epochs", "1", "--k", "2", "--workers", "1", "--work-dir", str(tmp_path)]
    assert estimator_bench.main(argv) == 0

    # the oracle: MCAN, the prior and a random draw, 2 seeds each, val history per seed
    path = tmp_path / "oracle" / "arch_oracle_vqa.json"
    header, oracle = load_oracle(path)
    raw = json.loads(path.read_text())
    assert header["task"] == "vqa" and header["metric"] == "vqa_acc"
    fusion = [f"fusion_{p}" for p in PATTERNS]
    assert [a.label for a in oracle] == ["mcan", "mmnas_prior", "random0", *fusion]
    assert raw["archs"][3]["arch"] == "early_summation: both:early_sum text:SA text:FFN image:RSA image:FFN text:SA text:FFN image:RSA image:FFN"
    assert raw["archs"][0]["arch"] == "SA FFN | SA GA FFN" and raw["archs"][1]["arch"] == "SA FFN | RSA GA FFN"
    for entry in raw["archs"]:
        assert entry["val"]["n"] == 2 and len(entry["val_history"]) == 2 and all(len(h) == 2 for h in entry["val_history"])
        assert entry["val"]["values"] == [h[-1] for h in entry["val_history"]]  # the final epoch's val, per seed
        assert entry["parameters"] > 0 and entry["train_cpu_s"]["total"] > 0
    assert raw["train_cpu_s"] == pytest.approx(sum(a["train_cpu_s"]["total"] for a in raw["archs"]))
    assert raw["cell_commits"] == [raw["provenance"]["commit"]]  # every cell trained by this checkout's code
    # VQA is trained with the grounding term, and the estimators' supernets with the same loss
    assert raw["settings"]["train"]["head"]["grounding_weight"] == oracle_bench.VQA_GROUNDING_WEIGHT > 0
    search = estimator_bench.search_config(raw, "vqa", "proxyless", 0, tmp_path / "probe")
    assert search.head.grounding_weight == oracle_bench.VQA_GROUNDING_WEIGHT
    assert oracle_bench.TRAIN["vqa"]["head"]["grounding_weight"] == oracle_bench.VQA_GROUNDING_WEIGHT

    # the estimators: each scored as score_estimator scores its stored estimates
    report = json.loads((tmp_path / "estimators_vqa.json").read_text())
    check_provenance(report, "bench_estimators.py", argv)
    assert set(report["estimators"]) == {"oneshot_proxyless", "fewshot_proxyless", "short_k1", "combined_proxyless_short_k1",
                                         "combined_fewshot_proxyless_short_k1"}
    # the few-shot cells search again (the same supernet: deterministic per seed), then fine-tune one
    # sub-supernet per choice of dec.0 the sample makes, at a cost that includes the search
    for seed in (0, 1):
        name = f"fewshot_vqa_proxyless_dec.0_e1_seed{seed}"
        cell = json.loads((tmp_path / "cells" / f"{name}.json").read_text())
        searched = json.loads((tmp_path / "runs" / f"search_vqa_proxyless_seed{seed}" / "final_arch.json").read_text())
        again = json.loads((tmp_path / "runs" / name / "search" / "final_arch.json").read_text())
        assert (again["enc"], again["dec"], again["probs"]) == (searched["enc"], searched["dec"], searched["probs"])
        assert set(cell["fine_tuning"]) == {a.spec["dec"][0][0] for a in oracle if a.label in cell["scores"]}  # MMnas shape
        assert cell["cpu_s"] > cell["search_cpu_s"] > 0
    for name, entry in report["estimators"].items():
        # the MMnas supernet scores its own space (so does a combination with it); a short training
        # scores the fusion patterns too
        scored = {a.label for a in oracle} - (set(fusion) if name.startswith(("oneshot", "fewshot", "combined")) else set())
        assert set(entry["estimates"]) == scored and entry["cpu_s"] > 0
        again = score_estimator(oracle, entry["estimates"], k=2)
        assert entry["score"]["topk_pick"] == again["topk_pick"] and entry["score"]["top1_regret"] == again["top1_regret"]
        assert math.isnan(again["kendall_tau"]) or -1 <= entry["score"]["kendall_tau"] <= 1
    assert len(report["estimators"]["oneshot_proxyless"]["per_seed"]) == 2
    parts = report["estimators"]["oneshot_proxyless"], report["estimators"]["short_k1"]
    combined = report["estimators"]["combined_proxyless_short_k1"]
    assert combined["estimates"] == rank_average(*(p["estimates"] for p in parts))
    assert combined["cpu_s"] == pytest.approx(parts[0]["cpu_s"] + sum(
        json.loads((tmp_path / "cells" / f"short_vqa_{label}_k1.json").read_text())["cpu_s"] for label in combined["estimates"]))

    # resumed: every cell has its result file, nothing is trained again
    cells = sorted((tmp_path / "oracle" / "cells").glob("*.json"))
    stamps = {p.name: p.stat().st_mtime_ns for p in cells}
    assert len(cells) == 18
    capsys.readouterr()
    oracle_args = ["--quick", "--tasks", "vqa", "--archs", "3", "--seeds", "2", "--workers", "1", "--work-dir", str(tmp_path / "oracle")]
    assert oracle_bench.main(oracle_args) == 0
    assert "18 cells: 18 already done, 0 to run" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "oracle" / "cells").glob("*.json")} == stamps
    report = json.loads(path.read_text())
    assert report["archs"] == raw["archs"]
    check_provenance(report, "bench_arch_oracle.py", oracle_args)
    capsys.readouterr()
    assert oracle_bench.main([*oracle_args, "--status"]) == 0  # a run in progress, read from its cells
    status = capsys.readouterr().out
    assert "18 of 18 cells done" in status and "vqa: 9 archs started" in status
    rows = [line.split() for line in status.splitlines()[2:]]
    assert sorted(r[0] for r in rows) == sorted(a["label"] for a in raw["archs"])
    by_label = {a["label"]: a for a in raw["archs"]}
    for row in rows:  # the same means as the oracle file's, best val first
        assert float(row[2]) == pytest.approx(by_label[row[0]]["val"]["mean"], abs=0.006)
    assert [float(r[2]) for r in rows] == sorted((float(r[2]) for r in rows), reverse=True)
    with pytest.raises(SystemExit, match="other settings"):
        oracle_bench.main([*oracle_args, "--sample-seed", "1"])

    # --partial: the oracle from the seeds every architecture finished, trains nothing
    partial_dir = tmp_path / "partial"
    assert oracle_bench.main([*oracle_args, "--partial", "--out-dir", str(partial_dir)]) == 0
    partial = json.loads((partial_dir / "arch_oracle_vqa.json").read_text())
    assert partial["archs"] == raw["archs"] and partial["run"]["partial"] == {"seeds": [0, 1], "planned_seeds": [0, 1]}
    (tmp_path / "oracle" / "cells" / "vqa_random0_seed1.json").unlink()  # seed 1 unfinished for one architecture
    (partial_dir / "arch_oracle_vqa.json").unlink()
    capsys.readouterr()
    assert oracle_bench.main([*oracle_args, "--partial", "--out-dir", str(partial_dir)]) == 0
    assert "vqa: 1 seed(s) finished for every architecture; an oracle needs 2" in capsys.readouterr().out
    assert not (partial_dir / "arch_oracle_vqa.json").exists()
    assert len(list((tmp_path / "oracle" / "cells").glob("*.json"))) == 17  # nothing trained
