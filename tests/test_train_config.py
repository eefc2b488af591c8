"""Derived-training config, architecture resolution, DeepSpeed config completion, and the checks
that fail on the driver before any Ray worker starts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmsearch.config import ConfigError, load_config
from mmsearch.data.synthetic import SyntheticTaskData
from mmsearch.nas import ArchSpec, named_spec, save_arch_spec
from mmsearch.orchestration.deepspeed_engine import complete_deepspeed_config
from mmsearch.orchestration.train import TrainSetupError, check_resources, prepare_run
from mmsearch.recipes.train_derived.arch import ArchNotFoundError, resolve_arch, search_outcome
from mmsearch.recipes.train_derived.config import (
    ScalingSettings,
    TrainDerivedConfig,
    default_run_name,
    learning_rate,
    load_deepspeed_json,
    resolve_config,
)

ROOT = Path(__file__).resolve().parents[1]
TINY_ARCH = {"enc": [["self_att"], ["feed_forward"]], "dec": [["rel_self_att"], ["guided_att"], ["feed_forward"]]}


@pytest.fixture(scope="module")
def vqa_data() -> SyntheticTaskData:
    return SyntheticTaskData("vqa", train_images=20, val_images=5, test_images=5)


def tiny(**sections) -> dict:
    base = {"arch": TINY_ARCH, "data": {"root": "synthetic", "task": "vqa"}, "model": {"hidden": 32, "head_dim": 16},
            "train": {"batch_size": 8}}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base


# --- config -----------------------------------------------------------------------------------
def test_defaults_are_mmnas_final_training():
    cfg = TrainDerivedConfig()
    assert (cfg.model.hidden, cfg.model.head_dim, cfg.model.dropout) == (512, 64, 0.1)
    assert (cfg.optim.lr, cfg.optim.betas, cfg.optim.eps, cfg.optim.grad_clip) == (1.2e-4, (0.9, 0.98), 1e-9, 1.0)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.optim.lr_decay_epochs) == (13, 64, (10, 12))


@pytest.mark.parametrize("task", ["vqa", "itm", "vg"])
def test_shipped_configs_load(task):
    cfg = load_config(TrainDerivedConfig, ROOT / "configs" / "train" / f"{task}.yaml")
    assert cfg.data.task == task and cfg.head is not None and cfg.head.task == task
    assert resolve_arch(cfg.arch).task == task  # the shipped default is MMnas's architecture for the task


def test_learning_rate_warmup_then_step_decay():
    optim = TrainDerivedConfig().optim
    rates = [learning_rate(optim, e) for e in range(1, 14)]
    assert rates[:4] == pytest.approx([0.25 * 1.2e-4, 0.5 * 1.2e-4, 0.75 * 1.2e-4, 1.2e-4])
    assert rates[9] == pytest.approx(1.2e-4 * 0.2) and rates[11] == pytest.approx(1.2e-4 * 0.04)
    with pytest.raises(ValueError, match="1-based"):
        learning_rate(optim, 0)


def test_resolve_fills_data_sizes_and_inlines_the_arch(vqa_data):
    cfg = resolve_config(load_config(TrainDerivedConfig, tiny(arch="mcan")), vqa_data.info)
    assert cfg.model.region_dim == vqa_data.info.region_dim and cfg.model.vocab_size == vqa_data.info.vocab_size
    assert cfg.head.num_answers == vqa_data.info.num_answers
    assert isinstance(cfg.arch, dict) and cfg.spec.same_architecture(named_spec("mcan"))
    again = resolve_config(cfg, vqa_data.info)  # idempotent: a resolved config resolves to itself
    assert again == cfg


def test_invalid_configs_name_the_key():
    with pytest.raises(ConfigError, match="hidden .* multiple of head_dim"):
        load_config(TrainDerivedConfig, tiny(model={"hidden": 30, "head_dim": 16}))
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(TrainDerivedConfig, tiny(train={"epochs": 2, "epoch": 3}))
    with pytest.raises(ConfigError, match="does not match data.task"):
        load_config(TrainDerivedConfig, tiny(head={"task": "vg"}))


def test_default_run_name():
    assert default_run_name(load_config(TrainDerivedConfig, tiny(arch="mmnas_vqa", seed=3))) == "train_vqa_mmnas_vqa_seed3"
    assert default_run_name(load_config(TrainDerivedConfig, tiny(arch="runs/search_vqa/"))) == "train_vqa_search_vqa_seed0"


# --- architecture sources ---------------------------------------------------------------------
def test_arch_from_name_file_mmnas_file_and_dict(tmp_path):
    assert resolve_arch("mmnas_vqa").same_architecture(named_spec("mmnas_vqa"))
    spec = ArchSpec(enc=("self_att",), dec=("guided_att", "feed_forward"))
    save_arch_spec(spec, tmp_path / "ours.json")
    save_arch_spec(spec.replace(epoch=7), tmp_path / "mmnas.json", mmnas_format=True)
    assert resolve_arch(str(tmp_path / "ours.json")).same_architecture(spec)
    from_mmnas = resolve_arch(str(tmp_path / "mmnas.json"))
    assert from_mmnas.same_architecture(spec) and from_mmnas.epoch == 7
    assert resolve_arch(spec.to_dict()).same_architecture(spec)


def test_arch_from_search_output_and_tune_experiment(tmp_path):
    searched = ArchSpec(enc=("self_att", "feed_forward"), dec=("rel_self_att", "guided_att"))
    run = tmp_path / "search_vqa"
    save_arch_spec(searched, run / "best_arch.json")
    save_arch_spec(ArchSpec(enc=("feed_forward",), dec=("self_att",)), run / "final_arch.json")
    (run / "search_result.json").write_text(json.dumps({"metric": "val_vqa_acc", "best_val_metric": 41.5, "best_epoch": 6}))
    assert resolve_arch(str(run)).same_architecture(searched)  # best, not final
    assert search_outcome(str(run)) == {"metric": "val_vqa_acc", "value": 41.5, "epoch": 6, "source": str(run / "search_result.json")}

    experiment = tmp_path / "experiment"
    for trial, arch in (("t1", ArchSpec(enc=("feed_forward",), dec=("self_att",))), ("t2", searched)):
        save_arch_spec(arch, experiment / trial / "best_arch.json")
    summary = {"metric": "val_metric", "best": {"trial_id": "t2", "metric": 50.0, "epoch": 4},
               "trials": [{"trial_id": "t1", "path": str(experiment / "t1")}, {"trial_id": "t2", "path": str(experiment / "t2")}]}
    (experiment / "experiment_summary.json").write_text(json.dumps(summary))
    picked = resolve_arch(str(experiment))
    assert picked.same_architecture(searched) and "trial t2" in picked.source
    assert search_outcome(str(experiment))["value"] == 50.0


def test_arch_errors_say_what_was_looked_for(tmp_path):
    with pytest.raises(ArchNotFoundError, match="neither a named spec .*mcan.* nor an existing file"):
        resolve_arch(str(tmp_path / "nope.json"))
    (tmp_path / "warmup_only").mkdir()
    save_arch_spec(ArchSpec(enc=("feed_forward",), dec=("self_att",)), tmp_path / "warmup_only" / "final_arch.json")
    with pytest.raises(ArchNotFoundError, match="never left warm-up"):
        resolve_arch(str(tmp_path / "warmup_only"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"enc": [["self_att"]], "dec": [["cross_att"]]}))
    with pytest.raises(ValueError, match=r"bad.json: unknown op .cross_att.( \(did you mean .*\))?; known ops: self_att"):
        resolve_arch(str(bad))


# --- checks before any worker starts ----------------------------------------------------------
def test_prepare_run_resolves_everything_on_the_driver(vqa_data, tmp_path):
    prepared = prepare_run(tiny(run={"storage_path": str(tmp_path), "name": "r1"}), task_data_factory=lambda: vqa_data)
    assert prepared.name == "r1" and prepared.location.uri == str(tmp_path / "r1")
    assert prepared.train_samples == vqa_data.num_samples("train")
    assert isinstance(prepared.config.arch, dict) and prepared.config.model.region_dim == vqa_data.info.region_dim


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"arch": "/no/such/spec.json"}, ArchNotFoundError, "neither a named spec"),
        ({"arch": {"enc": [["self_att"]], "dec": [["guided_attention"]]}}, ValueError, "unknown op 'guided_attention'"),
        ({"arch": {"enc": [["guided_att"]], "dec": [["self_att"]]}}, ValueError, "encoder blocks cannot use"),
        ({"model": {"hidden": 32, "head_dim": 16, "region_dim": 2048}}, ValueError, "model.region_dim is 2048 but the data has 16"),
        ({"train": {"batch_size": 64}, "scaling": {"num_workers": 2}}, ValueError, "'train' part has 40 samples"),
        ({"deepspeed": "/no/such/ds.json"}, FileNotFoundError, "DeepSpeed config not found"),
    ],
)
def test_bad_input_fails_before_any_worker(vqa_data, tmp_path, changes, error, message):
    with pytest.raises(error, match=message):
        prepare_run(tiny(**changes), task_data_factory=lambda: vqa_data)


def test_resources_that_cannot_fit_fail_on_a_local_ray():
    scaling = ScalingSettings(num_workers=4, cpus_per_worker=1.0)
    with pytest.raises(TrainSetupError, match="4 workers x 1 CPUs = 4 CPUs, the cluster has 2"):
        check_resources(scaling, {"CPU": 2.0}, strict=True)
    check_resources(scaling, {"CPU": 2.0}, strict=False)  # a cluster may autoscale: warn only
    with pytest.raises(TrainSetupError, match="GPUs, the cluster has 0"):
        check_resources(ScalingSettings(use_gpu=True), {"CPU": 8.0}, strict=True)


# --- DeepSpeed configs ------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_shipped_deepspeed_configs_complete(path):
    ds = load_deepspeed_json(str(path))
    cfg = load_config(TrainDerivedConfig, tiny(train={"batch_size": 8}))
    done = complete_deepspeed_config(ds, cfg, world_size=2)
    accumulation = done["gradient_accumulation_steps"]
    assert done["train_micro_batch_size_per_gpu"] == 8 and done["train_batch_size"] == 8 * accumulation * 2
    assert done["gradient_clipping"] == 1.0 and "auto" not in json.dumps(done)
    assert ds["zero_optimization"]["stage"] in (1, 2, 3)


def test_deepspeed_config_must_agree_with_the_training_config():
    cfg = load_config(TrainDerivedConfig, tiny(train={"batch_size": 8}))
    with pytest.raises(ValueError, match="train_batch_size is 64 but the training config implies 16"):
        complete_deepspeed_config({"train_batch_size": 64}, cfg, world_size=2)
    with_optimizer = complete_deepspeed_config({"optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}, cfg, world_size=1)
    assert with_optimizer["optimizer"]["params"]["lr"] == cfg.optim.lr and "zero_allow_untested_optimizer" not in with_optimizer
    with pytest.raises(ValueError, match="stage must be 0, 1, 2 or 3"):
        load_deepspeed_json({"zero_optimization": {"stage": 4}})


# --- jobs/train_derived.py ----------------------------------------------------------------------
def load_job():
    import mmsearch.orchestration.train_job as job  # what jobs/train_derived.py and mmsearch train run

    return job


def test_job_flags_become_config_overrides():
    job = load_job()
    args = job.build_parser().parse_args(["--config", "c.yaml", "--arch", "runs/search_vqa", "--workers", "2", "--gpu",
                                          "--deepspeed", "ds.json", "--name", "r", "--storage", "s3://b/p", "train.epochs=4"])
    assert job.job_overrides(args) == ["arch=runs/search_vqa", "scaling.num_workers=2", "deepspeed=ds.json", "run.name=r",
                                       "run.storage_path=s3://b/p", "scaling.use_gpu=true", "train.epochs=4"]
    smoke = job.build_parser().parse_args(["--config", "c.yaml", "--smoke-test", "--cpu"])
    overrides = job.job_overrides(smoke)
    assert overrides[0] == "data.root=synthetic" and overrides[-1] == "scaling.use_gpu=false"
    cfg = load_config(TrainDerivedConfig, ROOT / "configs" / "train" / "vqa.yaml", overrides)
    assert cfg.data.root == "synthetic" and cfg.train.epochs == 2 and not cfg.scaling.use_gpu


def test_job_fits_a_local_machine():
    job = load_job()
    cfg = load_config(TrainDerivedConfig, tiny(scaling={"num_workers": 1, "cpus_per_worker": 4}))
    plain = job.build_parser().parse_args(["--config", "c.yaml"])
    one_gpu = job.fit_to_machine(cfg, plain, {"CPU": 16.0, "GPU": 1.0}, local=True)  # single-GPU local mode
    assert one_gpu.scaling.use_gpu and one_gpu.scaling.num_workers == 1 and one_gpu.scaling.gpus_per_worker == 1.0
    cpu_only = job.fit_to_machine(cfg, job.build_parser().parse_args(["--config", "c.yaml", "--cpu", "--workers", "2"]),
                                  {"CPU": 2.0, "GPU": 1.0}, local=True)
    assert not cpu_only.scaling.use_gpu and cpu_only.scaling.num_workers == 2 and cpu_only.scaling.cpus_per_worker == 1.0
    assert job.fit_to_machine(cfg, plain, {"CPU": 2.0, "GPU": 4.0}, local=False) == cfg  # a cluster: the config stands


def test_the_job_validates_its_config_once_on_the_driver(tmp_path, monkeypatch, capsys):
    """Config load, smoke-run name, resolution (architecture, data sizes), the fit to the machine
    and the rescale: one validation of the training config on the driver, one storage preflight."""
    import collections
    import importlib

    import mmsearch.config
    from mmsearch.orchestration import cluster
    from mmsearch.orchestration import train as train_module

    job = load_job()
    validations, preflights, ran = collections.Counter(), [], []
    adapter, preflight = mmsearch.config.TypeAdapter, importlib.import_module("mmsearch.storage.preflight")
    real_preflight = preflight._preflight

    def counting_adapter(cls):
        validations[cls.__name__] += 1
        return adapter(cls)

    monkeypatch.setattr(mmsearch.config, "TypeAdapter", counting_adapter)
    monkeypatch.setattr(preflight, "_preflight", lambda location: (preflights.append(location.uri), real_preflight(location)))
    # No Ray: a local machine of 2 CPUs, and the prepared run is recorded instead of trained.
    monkeypatch.setattr(cluster, "connect", lambda: cluster.ClusterInfo("local", None, None, {"CPU": 2.0}, "disabled"))
    monkeypatch.setattr(train_module, "run_prepared", lambda prepared: ran.append(prepared) or _Finished())
    assert job.main(["--smoke-test", "--workers", "2", "--storage", str(tmp_path)]) == 0, capsys.readouterr().err
    (prepared,) = ran
    assert prepared.config.scaling.num_workers == 2 and prepared.config.scaling.cpus_per_worker == 1.0  # fitted, rescaled
    assert prepared.config.run.name.endswith("_smoke") and isinstance(prepared.config.arch, dict)  # named, resolved
    assert validations["TrainDerivedConfig"] == 1
    assert len(preflights) == 1


class _Finished:
    outputs = "nowhere"

    def describe(self) -> str:
        return "finished"
