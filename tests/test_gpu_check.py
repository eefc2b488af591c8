"""bench/gpu_check.py stops clearly where there is no GPU, and the steps it would run exist."""
from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_fails_clearly_and_writes_nothing(gpu_check, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--out", str(out)], gpu_name=lambda: None) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no CUDA GPU visible here") and "Nothing was written" in err
    assert not out.exists()


def test_on_this_machine_it_sees_no_gpu(gpu_check):
    import torch

    assert (gpu_check.gpu_or_none() is None) == (not torch.cuda.is_available())


def test_every_step_runs_an_existing_script_with_existing_configs(gpu_check, tmp_path):
    steps = gpu_check.job_steps("python", tmp_path)
    assert set(steps) == {"smoke_search", "train_ddp", "zero2_bf16", "bench_train_derived"}
    # the limits leave a minute of the ten for the in-process FuseMix step
    assert sum(limit for _, limit in steps.values()) <= 540
    for cmd, _ in steps.values():
        assert (ROOT / cmd[1]).is_file(), cmd
        for flag in ("--config", "--deepspeed"):
            if flag in cmd:
                assert (ROOT / cmd[cmd.index(flag) + 1]).is_file(), cmd
    assert "--gpu" in steps["train_ddp"][0] and "--gpu" in steps["bench_train_derived"][0]
    # the search gets no resource flag: sharing the GPU must be the default
    assert not any("gpus_per_trial" in part or part == "--cpu" for part in steps["smoke_search"][0])


def test_smoke_search_checks_read_the_plan_and_the_trials_device(gpu_check):
    plan = "Trials on GPU: 0.5 GPU each (auto: 1 GPU(s) shared by 2 concurrent trial(s)); bf16 autocast where ..."
    on_gpu = [{"ran_on": "cuda:0, bf16 autocast"}, {"ran_on": "cuda, bf16 autocast"}]
    assert all(gpu_check.smoke_search_checks(plan, on_gpu).values())
    cpu = "Trials on CPU (the cluster reports no GPU); fp32"
    assert not any(gpu_check.smoke_search_checks(cpu, [{"ran_on": "cpu, fp32"}]).values())
    assert not gpu_check.smoke_search_checks(plan, [])["trial_ran_on_cuda"]  # no finished trial: nothing shown
    assert not gpu_check.smoke_search_checks(plan, [*on_gpu, {"ran_on": "cpu, fp32"}])["trial_ran_on_cuda"]
    assert shlex.split(" ".join(gpu_check.job_steps("python", Path("/x"))["smoke_search"][0]))[1] == "jobs/search_vqa.py"
    # --synthetic-data changes the smoke search's data, and nothing else
    plain, synthetic = gpu_check.job_steps("python", Path("/x")), gpu_check.job_steps("python", Path("/x"), synthetic_data=True)
    assert synthetic["smoke_search"][0] == [*plain["smoke_search"][0], "recipe.data.root=synthetic"]
    assert {k: v for k, v in synthetic.items() if k != "smoke_search"} == {k: v for k, v in plain.items() if k != "smoke_search"}
