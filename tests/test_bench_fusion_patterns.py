"""bench/bench_fusion_patterns.py --quick: matched sizes, missing-modality figures, fusion mass."""
from __future__ import annotations

import json

import pytest
from test_bench_provenance import check_provenance, load_bench


def _bench():
    return load_bench("bench_fusion_patterns.py")


@pytest.mark.slow
def test_quick_run_matches_sizes_and_measures_robustness_and_fusion(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "fusion.json"
    models = ["fusion_multi_to_one"]
    args = ["--quick", "--tasks", "vqa", "--models", *models, "--out", str(out), "--workers", "1", "--work-dir", str(tmp_path / "work")]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    check_provenance(report, "bench_fusion_patterns.py", args)
    result = report["results"]["vqa"]
    assert result["reference"] == "mcan" and result["target_parameters"] > 0
    for name in models:
        row = result["models"][name]
        assert row["matched"] and abs(row["parameter_ratio"] - 1) <= 0.10, (name, row["parameter_ratio"])
        assert row["flops_per_sample"] > 0
        seed = row["seeds"]["0"]
        assert set(seed["missing"]) == {"no_image", "no_text"}
        for figure in seed["missing"].values():
            assert 0.0 <= figure["metric"] <= 100.0
            assert figure["drop"] == pytest.approx(seed["test"] - figure["metric"])
    joint = result["models"]["fusion_multi_to_one"]["seeds"]["0"]["fusion"]
    assert [r["op"] for r in joint] == ["joint:joint_rel_self_att"]
    assert 0.0 < joint[0]["cross_mass"] < 1.0  # some, not all, attention crosses modalities
    (line,) = [l for l in capsys.readouterr().out.splitlines() if l.startswith("| fusion_multi_to_one |")]
    assert line.count("|") == 9  # every column of the header filled: H, parameters, MFLOPs, test, both drops, step
    assert f"| {result['models']['fusion_multi_to_one']['flops_per_sample'] / 1e6:.1f} |" in line
    assert line.endswith("| - |")  # no step timed unless asked
    assert report["settings"]["device"] == "cpu" and seed["ran_on"] == "cpu" and seed["seconds"]["train"] > 0

    # a rerun finds its cell done and trains nothing; the same figures; with --step-rounds every
    # model's step is timed in interleaved rounds, the order rotated
    models = ["fusion_multi_to_one", "mcan"]
    timed_args = [*args[:args.index("--models") + 1], *models, *args[args.index("--models") + 2:], "--step-rounds", "2"]
    assert bench.main(timed_args) == 0
    printed = capsys.readouterr().out
    assert "2 cells: 1 already done, 1 to run" in printed
    rerun = json.loads(out.read_text())["results"]["vqa"]
    assert rerun["models"]["fusion_multi_to_one"] == report["results"]["vqa"]["models"]["fusion_multi_to_one"]
    timing = rerun["step_times"]
    assert [r["order"] for r in timing["rounds"]] == [models, models[::-1]]
    assert timing["batch_size"] == 16 and timing["steps_per_round"] == 2 and timing["threads"] == 1
    for name in models:
        entry = timing["models"][name]
        assert len(entry["rounds"]) == 2 and all(r["steps"] == 2 and r["wall_s"] > 0 for r in entry["rounds"])
        assert entry["wall_s"] == pytest.approx(sorted(r["wall_s"] for r in entry["rounds"])[0] / 2 + sorted(r["wall_s"] for r in entry["rounds"])[1] / 2)
        (row,) = [l for l in printed.splitlines() if l.startswith(f"| {name} |")]
        assert row.endswith(f"| {entry['wall_s'] * 1e3:.1f} |")


def test_step_times_only_trains_no_cell_and_writes_the_times_alone(tmp_path, capsys):
    bench = _bench()
    out, work = tmp_path / "steps.json", tmp_path / "work"
    models = ["mcan", "concat"]
    args = ["--quick", "--tasks", "vg", "--models", *models, "--out", str(out), "--work-dir", str(work),
            "--step-times-only", "--step-rounds", "1"]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    check_provenance(report, "bench_fusion_patterns.py", args)
    assert not work.exists() and set(report) >= {"step_times", "settings"} and "results" not in report
    timing = report["step_times"]["vg"]
    assert [r["order"] for r in timing["rounds"]] == [models]
    printed = capsys.readouterr().out
    for name in models:
        wall = timing["models"][name]["wall_s"]
        assert wall > 0 and f"vg {name:28s} {wall * 1e3:8.1f} ms/step" in printed

    with pytest.raises(SystemExit) as exit_:  # nothing to time: refused before any work
        bench.main(["--quick", "--step-times-only", "--out", str(tmp_path / "none.json")])
    assert exit_.value.code == 2 and not (tmp_path / "none.json").exists()


def test_a_wrong_data_root_exits_2_before_any_work(tmp_path, capsys):
    bench = _bench()
    out, work, absent = tmp_path / "out.json", tmp_path / "work", tmp_path / "no_such_root"
    for extra in ([], ["--step-times-only", "--step-rounds", "1"]):
        assert bench.main(["--root", str(absent), "--tasks", "vg", "--out", str(out), "--work-dir", str(work), *extra]) == 2
        assert f"error: {absent}: no precomputed data set here" in capsys.readouterr().err
    assert not out.exists() and not work.exists()


def test_cuda_without_a_gpu_exits_2_before_any_work(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    bench = _bench()
    out, work = tmp_path / "out.json", tmp_path / "work"
    assert bench.main(["--quick", "--tasks", "vg", "--device", "cuda", "--out", str(out), "--work-dir", str(work)]) == 2
    assert "error: --device cuda: torch sees no CUDA device here" in capsys.readouterr().err
    assert not out.exists() and not work.exists()


def test_fusion_mass_lists_cross_and_gate_blocks():
    """Without training: co-attention blocks count as fully crossing, the early-summation gate is read."""
    import torch

    from mmsearch.baselines import DataSizes, Widths
    from mmsearch.baselines.patterns import SpecModel
    from mmsearch.nas import pattern_spec
    from tests.test_baselines_models import make_batch

    bench = _bench()
    sizes = DataSizes(task="vqa", region_dim=24, vocab_size=30, num_answers=7)
    widths = Widths(hidden=32, flat_mlp=32, head_dim=16, dropout=0.0)
    torch.manual_seed(0)
    co = bench.fusion_mass(SpecModel(pattern_spec("co_attention_to_concat"), sizes, widths).eval(), make_batch())
    assert [r["op"] for r in co] == ["both:co_att", "joint:joint_rel_self_att"]
    assert co[0]["cross_mass"] == 1.0 and 0.0 < co[1]["cross_mass"] < 1.0
    gate = bench.fusion_mass(SpecModel(pattern_spec("early_summation"), sizes, widths).eval(), make_batch())
    assert [r["op"] for r in gate] == ["both:early_sum"] and 0.0 < gate[0]["mean_gate_text"] < 1.0


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    assert _bench().main(["--quick", "--models", "fusion_nope", "--out", str(tmp_path / "x.json")]) == 2
    assert "unknown models ['fusion_nope']" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
