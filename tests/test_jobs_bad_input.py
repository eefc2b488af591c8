"""Issue 12 §3-§5: ``train`` and ``precompute`` treat bad input as the search jobs do (exit 2,
one message naming the problem, before Ray starts), data that lies about itself is caught by the
jobs' data checks, and failed checks leave nothing behind. bench/README.md ("Reliability: bad
input") lists what was tried; these tests keep each case from coming back."""
from __future__ import annotations

import json
import re
import logging
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsearch.config import config_to_dict
from mmsearch.data.store import StoreWriter, scalar, vector
from mmsearch import storage
from mmsearch.orchestration import cluster
from mmsearch.orchestration.jobs import BAD_INPUT_EXIT, JOBS
from mmsearch.orchestration.jobs import main as job_main
from mmsearch.orchestration.train_resume import SNAPSHOT, checkpoint_to_restore, find_resume_point
from mmsearch.recipes.train_derived.state import STATE_FORMAT, STATE_NAME

SMOKE = ("--config", "configs/train/vqa.yaml", "--smoke-test")


@pytest.fixture(autouse=True)
def no_ray(monkeypatch, tmp_path):
    """Fails the test if a job gets as far as joining or starting Ray; the data set cache is private."""

    def refuse(*args, **kwargs):
        raise AssertionError("the job connected to Ray although its input is bad")

    monkeypatch.setattr(cluster, "connect", refuse)
    monkeypatch.setenv("MMSEARCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def train_job():
    import mmsearch.orchestration.train_job as job  # what jobs/train_derived.py and mmsearch train run

    return job


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bad(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == BAD_INPUT_EXIT, err
    assert "Traceback" not in err
    return err


# --- §3 train --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--name", "../x"), r"run\.name '\.\./x' must be"),
        (("--arch", "no_such_arch"), "'no_such_arch' is neither a named spec"),
        (("--deepspeed", "no/such/ds.json"), "DeepSpeed config not found: no/such/ds.json"),
        (("train.epochs=true",), "train.epochs: a number is expected, got a boolean"),
        (("data.root=/no/such/data",), "/no/such/data: no precomputed data set here"),
    ],
)
def test_train_bad_input_exits_2_before_ray(train_job, capsys, tmp_path, argv, message):
    err = bad(capsys, train_job.main([*SMOKE, "--storage", str(tmp_path / "runs"), *argv]))
    assert re.search(message, err), err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()  # nothing written, nothing outside


def test_train_unusable_storage_is_one_message(train_job, capsys, tmp_path):
    (tmp_path / "a_file").write_text("x")  # (unreachable S3 goes through the same preflight: test_jobs_errors)
    err = bad(capsys, train_job.main([*SMOKE, "--storage", str(tmp_path / "a_file")]))
    assert f"storage {tmp_path / 'a_file'}/train_vqa_mmnas_vqa_seed0_smoke is not usable: could not create the directory" in err


def test_train_config_is_found_in_the_package_from_any_directory(train_job, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = bad(capsys, train_job.main([*SMOKE, "--storage", str(tmp_path / "runs"), "--arch", "no_such_arch"]))
    assert "no_such_arch" in err and "config file not found" not in err  # read configs/train/vqa.yaml, failed later


def _fake_run(run: Path, config: dict, epochs: int) -> list[str]:
    """A Ray Train run directory as train_derived leaves it: one checkpoint per epoch, the snapshot last."""
    names = []
    for epoch in range(1, epochs + 1):
        name = f"checkpoint_2026-01-01_00-00-0{epoch}.000000"
        (run / name).mkdir(parents=True)
        torch.save({"format": STATE_FORMAT, "config": config, "spec": {}, "progress": {"epoch": epoch}}, run / name / STATE_NAME)
        torch.save({"weight": torch.zeros(64, 64)}, run / name / "model.pt")
        names.append(name)
    (run / SNAPSHOT).write_text(json.dumps({"checkpoint_results": [{"checkpoint_dir_name": n} for n in names]}))
    return names


def _prepared(train_job, tmp_path, *argv):
    from mmsearch.orchestration.train import prepare_run

    args = train_job.build_parser().parse_args([*SMOKE, "--storage", str(tmp_path / "runs"), "--name", "r", *argv])
    return prepare_run(train_job.load_job_config(args))


def test_train_resume_with_another_config_names_the_changed_keys(train_job, capsys, tmp_path):
    saved = config_to_dict(_prepared(train_job, tmp_path).config)
    saved["optim"]["lr"], saved["model"]["dropout"] = 0.5, 0.3
    _fake_run(tmp_path / "runs" / "r", saved, epochs=1)
    err = bad(capsys, train_job.main([*SMOKE, "--storage", str(tmp_path / "runs"), "--name", "r", "train.epochs=3"]))
    changed = err.split("was started with a different config; changed: ")[1].split(". Only")[0]
    assert changed == "model.dropout: 0.3 -> 0.1; optim.lr: 0.5 -> 0.001", changed  # train.epochs may change


def test_train_damaged_latest_checkpoint_falls_back_to_the_previous_one(train_job, tmp_path, caplog):
    prepared = _prepared(train_job, tmp_path)
    run = tmp_path / "runs" / "r"
    first, second = _fake_run(run, config_to_dict(prepared.config), epochs=2)
    model = run / second / "model.pt"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # an interrupted upload
    with caplog.at_level(logging.WARNING):
        point = find_resume_point(prepared.location, prepared.config)
    assert (point.checkpoint, point.epoch, point.skipped) == (first, 1, (second,))
    assert f"{second} is damaged (model.pt is damaged or truncated" in caplog.text
    # The workers load the intact one when Ray hands them the damaged one (and take later ones as they come).
    from ray.train import Checkpoint

    resume = point.loop_config(prepared.location)
    chosen = checkpoint_to_restore(Checkpoint(str(run / second)), resume)
    assert Path(chosen.path) == run / first
    assert checkpoint_to_restore(Checkpoint(str(run / "checkpoint_later")), resume).path.endswith("checkpoint_later")
    # With every checkpoint damaged there is nothing to resume: refused, by name.
    (run / first / STATE_NAME).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="every checkpoint is damaged"):
        find_resume_point(prepared.location, prepared.config)


def test_train_spec_recording_other_widths_warns(train_job, tmp_path, caplog):
    from mmsearch.nas import named_spec

    spec = named_spec("mmnas_vqa").to_dict()
    spec["config"] = {"model": {"hidden": 1024, "head_dim": 7}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    with caplog.at_level(logging.WARNING):
        prepared = _prepared(train_job, tmp_path, "--arch", str(path))
    assert prepared.config.model.hidden == 32  # the config's width is what trains ...
    assert "records model.hidden=1024; this run trains with the config's model.hidden=32" in caplog.text  # ... said so
    assert "records model.head_dim=7" in caplog.text


# --- §3 precompute ---------------------------------------------------------------------------------
def _precompute(*argv: str) -> int:
    from mmsearch.orchestration.precompute import main

    return main(list(argv))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("source.scenes.num_scenez=5",), "source.scenes.num_scenez: unknown key"),
        (("source.scenes.num_scenes=-5",), "num_scenes=-5 is too small"),
        (("--config", "configs/data/no_such.yaml"), "config file not found"),
    ],
)
def test_precompute_bad_config_exits_2(capsys, tmp_path, argv, message):
    err = bad(capsys, _precompute("--output", str(tmp_path / "ds"), *argv))
    assert message in err
    assert not (tmp_path / "ds").exists()


def test_precompute_unreachable_s3_exits_2(capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = closed_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    err = bad(capsys, _precompute("--output", "s3://bucket/ds"))
    assert "s3://bucket/ds" in err and "unreachable" in err


def test_precompute_over_another_data_set_names_the_overwrite_flag(capsys, tmp_path):
    from mmsearch.config import load_config
    from mmsearch.data.dataset_root import DatasetCard, DatasetRoot
    from mmsearch.data.precompute.config import PrecomputeConfig

    card = DatasetCard(name="scenes", fingerprint="0123456789ab", source={}, encoders={}, dtype="float16", tables=("pairs",),
                       splits={}, vocab_size=0, num_answers=0, max_regions=0, max_tokens=0)
    DatasetRoot(str(tmp_path / "ds")).write_card(card)
    err = bad(capsys, _precompute("--output", str(tmp_path / "ds")))
    assert "already holds a different data set" in err and "--overwrite" in err and "fingerprint 0123456789ab" in err
    assert load_config(PrecomputeConfig, None).name == "scenes"  # the card is untouched:
    assert DatasetRoot(str(tmp_path / "ds")).read_card().fingerprint == "0123456789ab"


# --- §4 data that lies -----------------------------------------------------------------------------
def _pairs_store(uri: Path, *, nan_at: int | None = None, encoder: str = "efficientnet_lite0") -> str:
    image = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    if nan_at is not None:
        image[nan_at, 3] = np.nan
    with StoreWriter(str(uri), dataset="scenes", split="train", check_finite=False) as writer:
        writer.add_table("pairs", {"image": vector(8, "float32", encoder), "text": vector(4, "float32", "minilm"),
                                   "image_id": scalar("int64")})
        writer.write_batch("pairs", {"image": image, "text": np.ones((40, 4), np.float32), "image_id": np.arange(40) // 2})
    return str(uri)


def _fusemix(capsys, tmp_path, store: str, *extra: str) -> str:
    clean = _pairs_store(tmp_path / "val")
    return bad(capsys, job_main(JOBS["tune_fusemix"], [f"recipe.data.store={store}", f"recipe.data.val_store={clean}",
                                                       'recipe.data.test_store=""', "recipe.model.x_dim=8", "recipe.model.y_dim=4",
                                                       *extra, "--storage", str(tmp_path / "results")]))


def test_nan_in_latents_fails_the_data_check_naming_file_and_column(capsys, tmp_path):
    err = _fusemix(capsys, tmp_path, _pairs_store(tmp_path / "train", nan_at=17))
    assert "data.store" in err and "column 'image'" in err and "NaN or inf at row 17" in err and "pairs/part-" in err
    assert not (tmp_path / "results").exists()


def test_search_data_check_scans_the_stores_for_nan(tmp_path, monkeypatch):
    from mmsearch.config import load_config
    from mmsearch.data.store import open_store
    from mmsearch.data.synthetic import SyntheticTaskData
    from mmsearch.recipes.entry import DataCheckError
    from mmsearch.recipes.search import recipe as search
    from mmsearch.recipes.search.data_check import SEARCH_DATA
    from mmsearch.recipes.search.config import SearchConfig

    data = SyntheticTaskData("vqa", train_images=20, val_images=5, test_images=5)
    data.stores = {"train": open_store(_pairs_store(tmp_path / "train", nan_at=3))}  # as StoreTaskData holds them
    monkeypatch.setattr(search, "open_search_data", lambda cfg: data)
    cfg = load_config(SearchConfig, {"data": {"root": str(tmp_path), "task": "vqa"}, "search": {"batch_size": 4, "arch_batch_size": 4}})
    with pytest.raises(DataCheckError, match=r"column 'image', shard pairs/part-\w+-00000.parquet: NaN or inf at row 3"):
        SEARCH_DATA.check(cfg)


def test_train_checks_the_stores_for_nan_before_ray(tmp_path):
    from mmsearch.data.store import StoreError, open_store
    from mmsearch.data.synthetic import SyntheticTaskData
    from mmsearch.orchestration.train import prepare_run

    data = SyntheticTaskData("vqa", train_images=20, val_images=5, test_images=5)
    data.stores = {"val": open_store(_pairs_store(tmp_path / "val", nan_at=5))}
    config = {"arch": "mcan", "data": {"root": "synthetic", "task": "vqa"}, "model": {"hidden": 32, "head_dim": 16},
              "train": {"batch_size": 8}, "run": {"storage_path": str(tmp_path / "runs")}}
    with pytest.raises(StoreError, match="column 'image', shard pairs/part-.*NaN or inf at row 5"):
        prepare_run(config, task_data_factory=lambda: data)
    assert not (tmp_path / "runs").exists()


def test_fusemix_encoder_must_match_the_stores_metadata(capsys, tmp_path):
    store = _pairs_store(tmp_path / "train", encoder="efficientnet_lite0")
    err = _fusemix(capsys, tmp_path, store, "recipe.data.x_encoder=clip")
    assert "data.x_encoder is 'clip' but the pairs.image latents" in err and "'efficientnet_lite0'" in err


def test_booleans_are_not_numbers_in_job_configs(capsys, tmp_path):
    err = bad(capsys, job_main(JOBS["search_vqa"], ["recipe.search.epochs=true", "--storage", str(tmp_path / "r")]))
    assert "search.epochs: a number is expected, got a boolean (True)" in err
    err = bad(capsys, job_main(JOBS["search_vqa"], ["tune.num_samples=true", "--storage", str(tmp_path / "r")]))
    assert "num_samples: a number is expected, got a boolean" in err


# --- §5 leftovers ----------------------------------------------------------------------------------
def test_check_leaves_no_experiment_directory(capsys, tmp_path):
    code = job_main(JOBS["search_vqa"], ["--check", "recipe.data.root=synthetic", "--storage", str(tmp_path / "results" / "deep")])
    assert code == 0, capsys.readouterr().err
    assert not (tmp_path / "results").exists()
    (tmp_path / "kept").mkdir()
    storage.preflight(storage.resolve_storage(str(tmp_path / "kept" / "exp")))
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and not any((tmp_path / "kept").iterdir())


def test_no_trial_fits_leaves_no_experiment_directory(capsys, tmp_path, monkeypatch):
    from mmsearch.orchestration import experiment

    monkeypatch.setattr(experiment.ray, "is_initialized", lambda: True)  # a cluster of 2 CPUs, without starting Ray
    monkeypatch.setattr(experiment.ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(cluster, "connect", lambda: cluster.ClusterInfo("cluster", "x", None, {"CPU": 2.0}, "disabled"))
    err = bad(capsys, job_main(JOBS["search_vqa"], ["recipe.data.root=synthetic", "tune.resources.cpus_per_trial=8",
                                                    "--storage", str(tmp_path / "results")]))
    assert "no trial fits on this cluster" in err
    assert not (tmp_path / "results").exists()


def test_search_resume_with_other_settings_names_them_before_ray(capsys, tmp_path):
    from mmsearch.orchestration.experiment import SPEC_FILE, plan_experiment
    from mmsearch.orchestration.jobs.config import JobOptions

    argv = ["recipe.data.root=synthetic", "recipe.seed=1", "--storage", str(tmp_path / "results")]
    spec = JOBS["search_vqa"]
    job = spec.load(JobOptions(overrides=("recipe.data.root=synthetic", "recipe.seed=1"), storage=str(tmp_path / "results")))
    plan = plan_experiment(spec.trial, spec.config_cls, job.recipe, job.tune, epochs_key=spec.epochs_key)
    started = {**plan.spec, "base_config": {**plan.spec["base_config"], "seed": 7}, "num_samples": plan.spec["num_samples"] + 1}
    experiment_dir = Path(plan.location.uri)
    (experiment_dir / SPEC_FILE).parent.mkdir(parents=True)
    (experiment_dir / SPEC_FILE).write_text(json.dumps(started))
    (experiment_dir / "tuner.pkl").write_bytes(b"")  # what Ray Tune looks for to resume
    err = bad(capsys, job_main(spec, argv))
    assert f"changed: base_config.seed: 7 -> 1; num_samples: {plan.spec['num_samples'] + 1} -> {plan.spec['num_samples']}" in err
