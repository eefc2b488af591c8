"""Every benchmark's results JSON says where its figures come from: the ``"provenance"`` block of
``mmsearch.machine.Provenance`` (commit, dirty tree, exact command, machine, load, versions, times).

``check_provenance`` is the one check; the benchmarks' own quick tests call it on their quick output
(search quality, scene baselines, FuseMix scenes: their quick runs are not repeated here). The
parametrised test below covers every ``bench/bench_*.py``: it runs the quick mode of the cheap
ones, and for the four whose quick mode needs Ray or minutes of CPU (Ray Tune, Ray Train, a 110 M
parameter adapter) it runs the quick mode's real ``main`` with only the measurement replaced by
fixed figures, which are then found in the written JSON next to the provenance block."""
from __future__ import annotations

import datetime as dt
import inspect
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))

from mmsearch.machine import PROVENANCE_KEYS, Provenance, cpu_model, git_state  # noqa: E402

SCRIPTS = sorted(p.name for p in BENCH.glob("bench_*.py"))
# Benchmarks whose existing quick-mode test checks the block (the quick run is not repeated here).
CHECKED_IN = {
    "bench_search_quality.py": ("test_bench_search_quality", "test_quick_run_fills_every_table_entry_and_resumes_without_rerunning"),
    "bench_scene_baselines.py": ("test_baselines_bench", "test_quick_benchmark_fills_every_table_cell"),
    "bench_fusemix_scenes.py": ("test_bench_fusemix_scenes", "test_quick_benchmark_on_60_scenes_beats_chance"),
    "bench_arch_oracle.py": ("test_bench_arch_oracle", "test_quick_oracle_and_estimators_are_complete_scored_and_resume_without_training"),
    "bench_estimators.py": ("test_bench_arch_oracle", "test_quick_oracle_and_estimators_are_complete_scored_and_resume_without_training"),
    "bench_fusion_search.py": ("test_bench_fusion_search", "test_quick_fusion_search_retrains_its_pick_with_the_oracles_seeds_and_compares_with_its_anchors"),
    "bench_fusion_patterns.py": ("test_bench_fusion_patterns", "test_quick_run_matches_sizes_and_measures_robustness_and_fusion"),
    "bench_fusemix_evidence.py": ("test_bench_fusemix_evidence", "test_quick_run_covers_every_comparison_at_equal_compute"),
    "bench_vs_reference.py": ("test_bench_vs_reference", "test_without_the_reference_checkout_it_says_so_times_nothing_and_records_provenance"),
    "bench_task_streaming.py": ("test_bench_task_streaming", "test_quick_run_measures_both_modes_at_every_size"),
    "bench_vqa_fit.py": ("test_bench_vqa_fit", "test_quick_runs_give_per_epoch_curves_a_consistent_summary_and_resume_without_training"),
    "bench_streamed_search.py": ("test_bench_streamed_search", "test_tiny_run_compares_stream_and_block16_with_memory"),
}


def load_bench(script: str):
    """A fresh module of ``bench/<script>`` (each call executes it anew, as a run would)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), REPO / "bench" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_provenance(report: dict, script: str, args: list[str]) -> dict:
    """The block is complete and true for this checkout, this machine and this command."""
    block = report["provenance"]
    assert set(PROVENANCE_KEYS) <= set(block), sorted(set(PROVENANCE_KEYS) - set(block))
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert block["commit"] == head and len(head) == 40
    assert isinstance(block["dirty"], bool) and block["dirty"] == bool(block["git"]["changed"])
    assert block["argv"] == [f"bench/{script}", *args]
    assert block["command"] == shlex.join(["python", f"bench/{script}", *args])
    assert shlex.split(block["command"])[1:] == block["argv"]  # the command reruns exactly these arguments
    machine = block["machine"]
    assert machine["cpu"] == cpu_model() and machine["cores"] == os.cpu_count() and machine["memory_gib"] > 0
    for when in ("start", "end"):
        load = block["load_average"][when]
        assert len(load) == 3 and all(x >= 0 for x in load)
    versions = block["versions"]
    assert versions["python"] == platform.python_version()
    assert versions["torch"] == metadata.version("torch") and versions["ray"] == metadata.version("ray")
    started, finished = (dt.datetime.fromisoformat(block[k]) for k in ("started_at", "finished_at"))
    assert started.tzinfo is not None and started <= finished <= dt.datetime.now(dt.timezone.utc)
    return block


# --- the helper itself ---------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env).stdout.strip()


def test_provenance_names_the_commit_and_every_uncommitted_change(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    script = repo / "bench" / "bench_x.py"
    script.write_text("print(1)\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "x")
    clean = Provenance(str(script), ["--quick", "--out", "a b.json"], repo=repo).block()
    assert clean["commit"] == _git(repo, "rev-parse", "HEAD") and clean["dirty"] is False and clean["git"]["changed"] == []
    assert clean["argv"] == ["bench/bench_x.py", "--quick", "--out", "a b.json"]
    assert clean["command"] == "python bench/bench_x.py --quick --out 'a b.json'"  # pastes into a shell as it ran
    assert clean["invoked"] == "main(argv) in process"

    script.write_text("print(2)\n")  # a tracked change and an untracked file both make the tree dirty
    (repo / "new.py").write_text("")
    dirty = Provenance(str(script), [], repo=repo).git
    assert dirty["dirty"] is True and sorted(dirty["changed"]) == ["bench/bench_x.py", "new.py"]

    monkeypatch.setattr(sys, "argv", ["bench/bench_x.py", "--tiny"])  # from the command line: sys.argv
    assert Provenance(str(script), repo=repo).block()["argv"] == ["bench/bench_x.py", "--tiny"]


def test_provenance_outside_a_checkout_says_so_instead_of_failing(tmp_path):
    state = git_state(tmp_path)
    assert state["commit"] is None and state["dirty"] is None and state["error"]


# --- every benchmark -----------------------------------------------------------------------------
def _load(name: str):
    import importlib

    return importlib.import_module(name.removesuffix(".py"))


def _mmnas_step(tmp_path, monkeypatch):
    import torch

    out = tmp_path / "mmnas.json"
    args = ["--quick", "--cases", "tiny_derived", "--threads", str(torch.get_num_threads()), "--out", str(out)]
    assert _load("bench_mmnas_step.py").main(args) == 0
    report = json.loads(out.read_text())
    assert report["cases"]["tiny_derived"]["step_s"]["median"] > 0
    floor = report["cases"]["tiny_derived"]["floor"]  # one profiled step in --quick
    assert floor["steps"] == 1 and "aten::mm" in floor["kernels"] and "aten::_fused_adam_" in floor["kernels"]
    assert 0 < floor["kernel_s_per_step"] < floor["profiled_aten_s_per_step"]
    assert floor["kernel_s_per_step"] == pytest.approx(sum(floor["kernels"].values()))
    return report, args


def _store_streaming(tmp_path, monkeypatch):
    out = tmp_path / "store.json"
    # one measuring child (the project's reader): each child is a fresh interpreter importing torch
    args = ["--quick", "--modes", "local", "--store-dir", str(tmp_path / "store"), "--out", str(out)]
    _load("bench_store_streaming.py").main(args)
    report = json.loads(out.read_text())
    assert report["store"]["rows"] == 5000 and list(report["modes"]) == ["local"]
    assert report["modes"]["local"]["epochs"][0]["rows"] == 5000
    return report, args


def _fusemix_step(tmp_path, monkeypatch):
    bench = _load("bench_fusemix_step.py")
    real_run = subprocess.run

    def child(cmd, *a, **k):  # the per-configuration child (110 M parameters): fixed figures
        if "--single" not in cmd:
            return real_run(cmd, *a, **k)
        figures = {"batch": int(cmd[cmd.index("--single") + 1]), "step_s_median": 2.0, "input_pairs_per_s": 128.0,
                   "mixed_pairs_per_s": 64.0, "achieved_gflops": 50.0, "peak_rss_gb": 1.0}
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(figures) + "\n", stderr="")

    monkeypatch.setattr(bench, "matmul_peak_gflops", lambda *a, **k: 100.0)
    monkeypatch.setattr(bench.subprocess, "run", child)
    out = tmp_path / "fusemix_step.json"
    args = ["--quick", "--out", str(out)]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    assert [r["fraction_of_matmul_peak"] for r in report["results"]] == [0.5, 0.5]
    return report, args


def _train_derived(tmp_path, monkeypatch):
    bench = _load("bench_train_derived.py")
    figures = {"ray_overhead_pct": 1.0, "ray_step_overhead_pct": 2.0, "scaling_2_workers": 0.9,
               "runs": {"ray_1": {"startup_s": 3.0}, "local": {"startup_s": 1.0}}}
    monkeypatch.setattr(bench, "cpu_bench", lambda quick, scratch: figures)  # Ray Train, 1 and 2 workers
    out = tmp_path / "train_derived.json"
    args = ["--quick", "--out", str(out)]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    assert report["cpu"] == figures and report["quick"] is True
    return report, args


def _orchestration(tmp_path, monkeypatch):
    from test_bench_orchestration import timeline

    bench = _load("bench_orchestration.py")
    monkeypatch.setattr(bench, "start_ray", lambda num_cpus: (0.5, 2.0))  # Ray Tune: fixed trial timelines
    monkeypatch.setattr(bench, "run_tune", lambda *a, **k: (SimpleNamespace(location="unused"), 16.5))
    monkeypatch.setattr(bench, "trial_histories", lambda location: [timeline(0.0, [4.0, 4.0], pid=1), timeline(0.0, [4.0, 4.0], pid=2)])
    out = tmp_path / "orchestration.json"
    args = ["--tiny", "--skip-noop", "--out", str(out)]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    assert report["trial_epochs"] == 4 and report["wall_s"] == 16.5
    return report, args


def _asha_vs_fifo(tmp_path, monkeypatch):
    bench = _load("bench_asha_vs_fifo.py")

    def scheduler(name, *a, **k):  # Ray Tune: fixed outcomes
        trials = [{"config": {"search.weight_lr": lr, "seed": s}, "best_val_metric": 50.0 + s + 10 * lr}
                  for lr in (3e-4, 3e-3) for s in (0, 1)]
        epochs = 6 if name == "asha" else 12
        return {"trial_epochs": epochs, "cpu_s": 10.0 * epochs, "train_s": 9.0 * epochs, "wall_s": 5.0 * epochs,
                "rungs": [3], "trials": trials, "best": {"val_metric": 51.03, "config": trials[-1]["config"]}}

    monkeypatch.setattr(bench, "start_ray", lambda num_cpus: (0.5, 2.0))
    monkeypatch.setattr(bench, "run_scheduler", scheduler)
    out = tmp_path / "asha.json"
    args = ["--tiny", "--out", str(out)]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    assert report["compute_saving"]["trial_epochs"] == 2.0
    return report, args


RUN_HERE = {"bench_mmnas_step.py": _mmnas_step, "bench_store_streaming.py": _store_streaming,
            "bench_fusemix_step.py": _fusemix_step, "bench_train_derived.py": _train_derived,
            "bench_orchestration.py": _orchestration, "bench_asha_vs_fifo.py": _asha_vs_fifo}


def test_every_benchmark_is_covered_once():
    assert SCRIPTS and set(SCRIPTS) == set(CHECKED_IN) | set(RUN_HERE) and not set(CHECKED_IN) & set(RUN_HERE)


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_output_records_provenance(script, tmp_path, monkeypatch):
    if script in CHECKED_IN:  # its own quick test checks the block: make sure it still does
        module, test = CHECKED_IN[script]
        source = inspect.getsource(getattr(_load(module), test))
        assert "check_provenance(report, " in source, f"{module}.{test} no longer checks the provenance block"
        return
    report, args = RUN_HERE[script](tmp_path, monkeypatch)
    check_provenance(report, script, args)
    if "command" in report:  # the benchmark's own command field is the same command
        assert report["command"] == report["provenance"]["command"]


@pytest.mark.parametrize("bad", [["--floor-steps", "-1"], ["--threads", "0"], ["--iters", "0"]])
def test_mmnas_step_refuses_bad_counts_before_measuring(bad, tmp_path):
    out = tmp_path / "mmnas.json"
    with pytest.raises(SystemExit) as exit_:
        _load("bench_mmnas_step.py").main(["--quick", *bad, "--out", str(out)])
    assert exit_.value.code == 2 and not out.exists()


def test_peak_rss_is_at_least_what_the_process_holds_now():
    from mmsearch.machine import peak_rss_mib

    with open("/proc/self/statm") as handle:
        resident = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    peak = peak_rss_mib()
    assert peak is not None and peak >= resident - 1  # MiB, rounded to 0.1
