"""``--then-train``: after a search, train its best architecture from scratch with Ray Train.

The training config (``configs/train/<task>.yaml`` unless ``--train-config``) is validated before
any trial starts. Its run goes into the experiment directory (``<experiment>/retrain``), on the
search's data set; ``mmsearch.orchestration.train.train_best_architecture`` trains the
``best_arch.json`` the search left there, and the searched vs retrained metrics are recorded in
``<experiment>/searched_vs_retrained.json`` for the report.
"""
from __future__ import annotations

from typing import Any

from mmsearch.config import ConfigError, apply_overrides, config_path, read_yaml, validate_config
from mmsearch.orchestration.jobs.config import JobConfig, JobOptions
from mmsearch.orchestration.jobs.results import RETRAIN_RUN

# --then-train --smoke-test: the derived network trained for 2 short epochs.
THEN_TRAIN_SMOKE = (
    "model.hidden=32", "model.head_dim=16", "head.flat_mlp_size=32", "train.epochs=2",
    "train.batch_size=16", "train.max_steps_per_epoch=5", "eval.batch_size=64", "data.limit={train: 256, val: 64, test: 64}",
)




def then_train_settings(task: str | None, job: JobConfig, options: JobOptions, experiment: Any) -> Any:
    """The resolved training config for ``--then-train``, validated now (before any trial), on the
    data of the search's validated config (``job.recipe``)."""
    if task is None:
        raise ConfigError("--then-train is for search jobs")
    try:
        from mmsearch.orchestration.train import train_best_architecture  # noqa: F401  (the handoff)
        from mmsearch.recipes.train_derived.config import TrainDerivedConfig
    except ImportError as exc:
        raise ConfigError(f"--then-train needs mmsearch.orchestration.train.train_best_architecture ({exc})") from None
    path = config_path(options.train_config or f"configs/train/{task}.yaml")
    raw = read_yaml(path)
    raw = raw["recipe"] if "recipe" in raw else raw
    overrides = [*(THEN_TRAIN_SMOKE if options.smoke_test else ()), f"data.root={job.recipe.data.root}",
                 f"run.storage_path={experiment.uri}", f"run.name={RETRAIN_RUN}"]
    if job.tune.s3_endpoint_url:
        overrides.append(f"run.s3_endpoint_url={job.tune.s3_endpoint_url}")
    cfg = validate_config(TrainDerivedConfig, apply_overrides(dict(raw), overrides), origin=f"{path} (--then-train)")
    if cfg.data.task != task:
        raise ConfigError(f"--train-config {path} trains task {cfg.data.task!r}, the search is for {task!r}")
    return cfg  # a TrainDerivedConfig, trained as it is


def then_train(location: Any, searched: dict[str, float], train_config: Any) -> dict[str, Any]:
    """Train the experiment's best architecture (``best_arch.json``) and record searched vs retrained."""
    from mmsearch.orchestration.jobs import results
    from mmsearch.orchestration.train import train_best_architecture

    print(f"Training the best architecture from scratch (--then-train): {location.uri}/{RETRAIN_RUN}", flush=True)
    handoff = train_best_architecture(location.uri, train_config)
    return results.write_comparison(location, searched, handoff)


__all__ = ["THEN_TRAIN_SMOKE", "then_train", "then_train_settings"]
