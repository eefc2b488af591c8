"""Per-trial resources from what a cluster reports (no GPU needed), --cpu, and device/precision choice."""
from __future__ import annotations

import pytest
import torch

from mmsearch.config import ConfigError
from mmsearch.orchestration.experiment import derive_max_concurrent_trials
from mmsearch.orchestration.resource_plan import plan_trial_resources
from mmsearch.orchestration.settings import ResourceSettings
from mmsearch.recipes.precision import choose_autocast, choose_device

# What ray.cluster_resources() reports on: a 1-GPU workstation, an 8-GPU node, a CPU-only laptop.
ONE_GPU = {"CPU": 16.0, "GPU": 1.0, "memory": 6.4e10, "accelerator_type:H100": 1.0}
EIGHT_GPUS = {"CPU": 96.0, "GPU": 8.0}
CPU_ONLY = {"CPU": 2.0}


def _plan(resources: ResourceSettings, cluster: dict, num_trials: int):
    placement = plan_trial_resources(resources, cluster, num_trials=num_trials)
    import dataclasses

    concurrency = derive_max_concurrent_trials(
        dataclasses.replace(resources, gpus_per_trial=placement.gpus_per_trial), cluster)
    return placement, concurrency


@pytest.mark.parametrize(
    ("resources", "cluster", "num_trials", "gpus_each", "concurrency"),
    [
        # one GPU, 16 CPUs: 15 trials fit by CPUs (one CPU kept for Ray Data); 8 planned share the GPU
        (ResourceSettings(cpus_per_trial=1), ONE_GPU, 8, 0.125, 8),
        # more trials planned than CPUs allow: the 15 that run at once share it; 1/15 rounded down to 1e-4
        (ResourceSettings(cpus_per_trial=1), ONE_GPU, 32, 0.0666, 15),
        # a cap on concurrency: the capped number share it
        (ResourceSettings(cpus_per_trial=1, max_concurrent_trials=3), ONE_GPU, 32, 0.3333, 3),
        # eight GPUs, 4 trials: one whole GPU each, never more (a trial is one process on one device);
        # 8 would fit, only 4 exist
        (ResourceSettings(cpus_per_trial=4), EIGHT_GPUS, 4, 1.0, 8),
        # eight GPUs, 16 trials at 4 CPUs (23 fit by CPUs): half a GPU each
        (ResourceSettings(cpus_per_trial=4), EIGHT_GPUS, 16, 0.5, 16),
        # eight GPUs, 64 trials at 1 CPU: 95 fit by CPUs, 64 share: 0.125 each
        (ResourceSettings(cpus_per_trial=1), EIGHT_GPUS, 64, 0.125, 64),
        # a fraction given by hand is used as given
        (ResourceSettings(cpus_per_trial=1, gpus_per_trial=0.25), ONE_GPU, 32, 0.25, 4),
        # no GPU on the cluster: none asked for
        (ResourceSettings(cpus_per_trial=0.5, reserve_cpus_for_data=0), CPU_ONLY, 8, 0.0, 4),
    ],
)
def test_gpu_share_from_cluster_resources(resources, cluster, num_trials, gpus_each, concurrency):
    placement, running = _plan(resources, cluster, num_trials)
    assert placement.gpus_per_trial == pytest.approx(gpus_each, abs=1e-12)
    assert running == concurrency
    # the trials that run at once really fit on the GPUs Ray reports
    assert running * placement.gpus_per_trial <= cluster.get("GPU", 0) + 1e-12
    assert placement.tune_resources() == {"cpu": resources.cpus_per_trial, "gpu": placement.gpus_per_trial}


def test_plan_says_gpu_and_precision():
    on_gpu, _ = _plan(ResourceSettings(cpus_per_trial=1), ONE_GPU, 4)
    assert on_gpu.source == "auto" and on_gpu.sharing == 4
    assert "0.25 GPU each (auto: 1 GPU(s) shared by 4 concurrent trial(s))" in on_gpu.describe()
    assert "bf16 autocast where the GPU supports it" in on_gpu.describe()
    forced, _ = _plan(ResourceSettings(cpus_per_trial=1, gpus_per_trial=0), ONE_GPU, 4)
    assert not forced.on_gpu and "although the cluster has 1 GPU(s)" in forced.describe()
    assert "no GPU" in _plan(ResourceSettings(), CPU_ONLY, 1)[0].describe()


def test_cpu_flag_forces_cpu_and_conflicts_with_a_gpu_share():
    from mmsearch.orchestration.jobs import JOBS, build_parser, force_cpu, options_from_args

    spec = JOBS["search_vqa"]
    options = options_from_args(build_parser(spec).parse_args(["--cpu", "--smoke-test"]))
    assert options.cpu
    job = spec.load(options)
    assert job.tune.resources.gpus_per_trial is None  # auto unless --cpu
    forced = force_cpu(job)
    assert forced.tune.resources.gpus_per_trial == 0
    assert plan_trial_resources(forced.tune.resources, ONE_GPU, num_trials=4).gpus_per_trial == 0
    given = spec.load(options_from_args(build_parser(spec).parse_args(["--cpu", "tune.resources.gpus_per_trial=0.5"])))
    with pytest.raises(ConfigError, match="--cpu and tune.resources.gpus_per_trial=0.5"):
        force_cpu(given)


def test_cpu_flag_exits_2_before_ray_on_a_conflict(capsys):
    from mmsearch.orchestration.jobs import JOBS, main

    assert main(JOBS["search_vqa"], ["--cpu", "tune.resources.gpus_per_trial=0.25", "--check"]) == 2
    assert "--cpu and tune.resources.gpus_per_trial" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "cuda", "expected"),
    [("auto", True, "cuda"), ("auto", False, "cpu"), ("cpu", True, "cpu"), ("cuda:1", True, "cuda:1")],
)
def test_device_choice(name, cuda, expected):
    assert str(choose_device(name, cuda_available=cuda)) == expected


def test_cuda_device_without_cuda_names_the_key():
    with pytest.raises(ValueError, match="search.device is 'cuda' but CUDA is not available"):
        choose_device("cuda", cuda_available=False, what="search.device")


@pytest.mark.parametrize(
    ("precision", "device", "bf16", "expected"),
    [
        ("auto", "cuda", True, torch.bfloat16),  # Ampere and later
        ("auto", "cuda", False, None),  # e.g. a V100 / T4: fp32
        ("auto", "cpu", False, None),  # CPUs stay fp32
        ("bf16", "cpu", False, torch.bfloat16),  # asked for explicitly
        ("fp32", "cuda", True, None),
        (True, "cuda", True, torch.bfloat16),  # FuseMix train.amp: true
        (False, "cuda", True, None),
    ],
)
def test_autocast_choice(precision, device, bf16, expected):
    assert choose_autocast(precision, torch.device(device), bf16_supported=bf16) is expected


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="precision must be auto, bf16 or fp32"):
        choose_autocast("fp8", torch.device("cpu"), bf16_supported=False)


@pytest.mark.parametrize("setting, gpus, one_machine, reused", [
    (None, None, True, True), (None, 0.25, True, False),  # the default: CPU trials reuse processes, GPU trials never
    (True, None, True, True), (True, 0, True, True),  # CPU trials: the next trial runs in a finished trial's process
    (True, 0.25, True, False), (True, 1, True, False),  # GPU trials: a fresh process each, its GPU memory freed on exit
    (False, 0, True, False),
    (None, None, False, False), (True, 0, False, False),  # on a cluster: a fresh process each, retried when its node is lost
])
def test_trials_reuse_processes_only_when_set_without_gpus_on_one_machine(setting, gpus, one_machine, reused):
    from mmsearch.config import load_config
    from mmsearch.orchestration.resource_plan import reuse_actors
    from mmsearch.orchestration.settings import TuneSettings

    settings = load_config(TuneSettings, {"experiment_name": "e", "metric": "m", "mode": "max",
                                          **({} if setting is None else {"reuse_actors": setting})})
    assert reuse_actors(settings, gpus, one_machine=one_machine) is reused

