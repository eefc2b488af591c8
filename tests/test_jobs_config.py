"""Job configs: argument parsing, overrides per section, smoke-test shrinking, data binding (no Ray)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmsearch.config import ConfigError, read_yaml, validate_config
from mmsearch.orchestration.experiment import plan_experiment
from mmsearch.orchestration.jobs import JOBS, SEARCH_TASKS, build_parser, options_from_args
from mmsearch.orchestration.jobs.config import SMOKE_SUFFIX, JobOptions
from mmsearch.orchestration.jobs.data import bind_data, dataset_uri
from mmsearch.recipes.fusemix.config import FuseMixConfig
from mmsearch.recipes.search.config import SearchConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SEARCH_JOBS = [f"search_{task}" for task in SEARCH_TASKS]


def parse(job: str, *argv: str) -> JobOptions:
    return options_from_args(build_parser(JOBS[job]).parse_args(list(argv)))


def test_positional_config_and_overrides_are_told_apart():
    options = parse("search_vqa", "configs/search/itm.yaml", "recipe.search.epochs=4", "tune.num_samples=2",
                    "--name", "exp1", "--storage", "s3://bucket/prefix", "--smoke-test", "--then-train")
    assert options.config == "configs/search/itm.yaml"
    assert options.overrides == ("recipe.search.epochs=4", "tune.num_samples=2")
    assert (options.name, options.storage, options.smoke_test, options.then_train) == ("exp1", "s3://bucket/prefix", True, True)
    assert parse("search_vqa", "--config", "a.yaml").config == "a.yaml"
    with pytest.raises(ConfigError, match="one config file"):
        parse("search_vqa", "--config", "a.yaml", "b.yaml")


def test_then_train_is_a_search_flag_only():
    with pytest.raises(SystemExit):
        build_parser(JOBS["tune_fusemix"]).parse_args(["--then-train"])


@pytest.mark.parametrize("job", SEARCH_JOBS)
def test_shipped_search_configs_plan_against_the_recipe(job):
    spec = JOBS[job]
    cfg = spec.load(JobOptions())
    validated = cfg.recipe  # validated at load, into the recipe's frozen config
    assert isinstance(validated, SearchConfig) and validated.data.task == spec.task
    assert cfg.dataset is not None  # the default run builds (or reuses) its data set
    assert validated.data.root == dataset_uri(cfg.dataset)  # ... and its trials read it
    plan = plan_experiment(spec.trial, SearchConfig, cfg.recipe, cfg.tune, epochs_key="search.epochs")
    assert plan.max_t == validated.search.epochs
    assert plan.num_trials >= 4 and plan.ladder is not None and plan.ladder.rungs  # ASHA has trials to compare
    assert cfg.tune.experiment_name == job


@pytest.mark.parametrize("job", SEARCH_JOBS)
def test_smoke_test_shrinks_data_model_epochs_and_ladder(job):
    spec = JOBS[job]
    full, smoke = spec.load(JobOptions()), spec.load(JobOptions(smoke_test=True))
    small, big = smoke.recipe, full.recipe
    assert small.search.epochs == 2 < big.search.epochs
    assert small.model.hidden < big.model.hidden and small.model.enc_depth <= big.model.enc_depth
    assert small.data.limit["weights"] <= 256
    assert smoke.dataset.source.scenes.num_scenes < full.dataset.source.scenes.num_scenes
    assert smoke.dataset.backend == "local"
    assert smoke.tune.experiment_name == job + SMOKE_SUFFIX  # never resumes (or clobbers) the real experiment
    plan = plan_experiment(spec.trial, SearchConfig, smoke.recipe, smoke.tune, epochs_key="search.epochs")
    assert plan.ladder.rungs == (1,) and plan.max_t == 2
    assert plan.num_trials <= 4


def test_user_overrides_win_over_the_smoke_test_and_name_flags_win_last():
    options = JobOptions(smoke_test=True, overrides=("recipe.search.epochs=3", "tune.experiment_name=mine"))
    cfg = JOBS["search_vqa"].load(options)
    assert cfg.recipe.search.epochs == 3 and cfg.tune.experiment_name == "mine"
    named = JOBS["search_vqa"].load(JobOptions(smoke_test=True, name="exact", storage="/tmp/x"))
    assert (named.tune.experiment_name, named.tune.storage_path) == ("exact", "/tmp/x")


def test_overrides_reach_every_section():
    cfg = JOBS["search_vqa"].load(JobOptions(overrides=(
        "recipe.model.hidden=96", "tune.scheduler.grace_period=1", "dataset.source.scenes.num_scenes=123")))
    assert cfg.recipe.model.hidden == 96
    assert cfg.tune.scheduler.grace_period == 1
    assert cfg.dataset.source.scenes.num_scenes == 123


def test_override_without_a_section_names_the_fix():
    with pytest.raises(ConfigError, match=r"did you mean recipe\.search\.epochs=4"):
        JOBS["search_vqa"].load(JobOptions(overrides=("search.epochs=4",)))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("recipe.search.epochs=0", r"search\.epochs"),
        ("recipe.search.epochz=3", r"search\.epochz: unknown key"),
        ("recipe.model.dec_pool=[self_att, bogus_op]", "bogus_op"),
        ("tune.num_samples=0", "num_samples must be >= 1"),
        ("dataset.source.scenes.num_scenes=-5", "num_scenes"),
    ],
)
def test_invalid_values_fail_at_load_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        JOBS["search_vqa"].load(JobOptions(overrides=(override,)))


def test_naming_the_data_turns_building_off():
    spec = JOBS["search_vqa"]
    assert spec.load(JobOptions(overrides=("recipe.data.root=/data/scenes",))).dataset is None
    assert spec.load(JobOptions(data_root="/data/scenes")).dataset is None
    assert spec.load(JobOptions(overrides=("dataset=null",))).dataset is None
    assert spec.load(JobOptions(data_root="/data/scenes")).recipe.data.root == "/data/scenes"
    bound = bind_data(spec.data, {"data": {"root": "synthetic"}}, "/data/scenes")
    assert bound["data"]["root"] == "/data/scenes"
    with pytest.raises(ConfigError, match="--data-root is empty"):
        spec.load(JobOptions(data_root=""))


def test_experiments_on_s3_get_their_data_set_beside_them_bound_into_the_recipe_at_load():
    cfg = JOBS["search_vqa"].load(JobOptions(storage="s3://bucket/runs", smoke_test=True))
    assert cfg.dataset.output.startswith("s3://bucket/runs/datasets/scenes-")  # every node reads it
    assert cfg.recipe.data.root == dataset_uri(cfg.dataset) == cfg.dataset.output


def test_fusemix_job_reads_a_plain_recipe_config_with_the_default_tune_file(tmp_path):
    spec = JOBS["tune_fusemix"]
    cfg = spec.load(JobOptions())
    recipe = cfg.recipe
    assert isinstance(recipe, FuseMixConfig) and recipe.data.backend == "ray"  # trials stream through Ray Data
    assert cfg.tune == validate_config(type(cfg.tune), read_yaml(CONFIGS / "tune" / "fusemix_scenes.yaml"))
    assert cfg.dataset.tables == ("pairs",)  # image and caption latents only
    root = dataset_uri(cfg.dataset)  # the data set the job builds (or reuses), bound at load
    assert [getattr(recipe.data, k) for k in ("store", "val_store", "test_store")] == [
        f"{root}/train", f"{root}/val", f"{root}/test"]
    bound = spec.load(JobOptions(data_root="/data/scenes")).recipe
    assert [getattr(bound.data, k) for k in ("store", "val_store", "test_store")] == [
        "/data/scenes/train", "/data/scenes/val", "/data/scenes/test"]
    assert spec.load(JobOptions(data_root="/data/x")).dataset is None
    assert spec.load(JobOptions(overrides=("recipe.data.store=/s/train",))).dataset is None

    tune_file = tmp_path / "tune.yaml"
    tune_file.write_text(yaml.safe_dump({"experiment_name": "fm", "metric": "val_rsum", "mode": "max"}))
    custom = spec.load(JobOptions(tune_file=str(tune_file), smoke_test=True))
    assert custom.tune.experiment_name == "fm" + SMOKE_SUFFIX
    plan = plan_experiment(spec.trial, FuseMixConfig, custom.recipe, custom.tune, epochs_key="train.epochs")
    assert plan.max_t == 2


def test_a_job_file_with_unknown_sections_or_no_tune_settings_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"recipe": {}, "tune": {}, "tunes": {}}))
    with pytest.raises(ConfigError, match=r"unknown top-level section\(s\) \['tunes'\]"):
        JOBS["search_vqa"].load(JobOptions(config=str(bad)))
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"search": {"epochs": 2}}))
    with pytest.raises(ConfigError, match="no tune settings"):
        JOBS["search_vqa"].load(JobOptions(config=str(plain)))


def test_the_data_set_goes_next_to_s3_experiments_and_to_the_cache_otherwise(tmp_path, monkeypatch):
    from mmsearch.data.precompute.config import fingerprint
    from mmsearch.orchestration.jobs.data import dataset_uri, place_dataset
    from mmsearch.storage import resolve_storage

    monkeypatch.setenv("MMSEARCH_CACHE", str(tmp_path / "cache"))
    dataset = JOBS["search_vqa"].load(JobOptions()).dataset
    on_s3 = place_dataset(dataset, resolve_storage("s3://bucket/experiments"))
    assert on_s3.output == f"s3://bucket/experiments/datasets/scenes-{fingerprint(dataset)}"  # every node reads it
    assert fingerprint(on_s3) == fingerprint(dataset)  # where it goes is not what it is
    local = place_dataset(dataset, resolve_storage(str(tmp_path / "results")))
    assert local == dataset and dataset_uri(local) == str(tmp_path / "cache" / f"scenes-{fingerprint(dataset)}")
    chosen = JOBS["search_vqa"].load(JobOptions(overrides=("dataset.output=s3://other/scenes",))).dataset
    assert place_dataset(chosen, resolve_storage("s3://bucket/experiments")).output == "s3://other/scenes"


def test_a_registered_task_gets_a_search_job():
    """tests/toy_task.py registers a task; its search job, smoke-test size and metric line follow."""
    import importlib

    from mmsearch.orchestration.jobs import job_spec, metric_meaning

    importlib.import_module("toy_task")
    spec = job_spec("search_toy")  # no job script of its own: the same card shape
    assert (spec.name, spec.task, spec.default_config) == ("search_toy", "toy", "configs/search/toy.yaml")
    assert "data.limit={weights: 256, arch: 64, val: 24}" in spec.smoke_test.recipe  # the task's smoke-test size
    assert metric_meaning("toy") == "toy accuracy in %, toy_acc"
    assert "search_toy" not in JOBS  # the jobs with scripts are unchanged
    with pytest.raises(KeyError, match="unknown job 'search_nothing'"):
        job_spec("search_nothing")


def test_a_job_asking_for_another_store_layout_builds_its_own_data_set(tmp_path, monkeypatch):
    """The layout is not part of what the data is (same fingerprint), but a job that asks for one
    image per row group (to stream regions) must not reuse the same data cut for sequential reads."""
    from mmsearch.data.precompute.config import fingerprint, storage_key
    from mmsearch.orchestration.jobs.data import dataset_uri

    monkeypatch.setenv("MMSEARCH_CACHE", str(tmp_path / "cache"))
    default = JOBS["search_vqa"].load(JobOptions()).dataset
    streamed = JOBS["search_vqa"].load(JobOptions(overrides=("dataset.layout.row_group_kib=128",
                                                             "dataset.layout.row_groups_per_shard=64"))).dataset
    assert fingerprint(streamed) == fingerprint(default) and storage_key(default) == fingerprint(default)
    assert storage_key(streamed) == f"{fingerprint(default)}-rg128k64"
    assert dataset_uri(streamed) != dataset_uri(default) and dataset_uri(streamed).endswith("-rg128k64")
