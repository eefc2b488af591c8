"""The FuseMix recipe's entry in ``RECIPES``: ``train_fusemix`` and what a job needs to run it."""
from __future__ import annotations

from typing import Any

from mmsearch.recipes.entry import Recipe, SmokeTest
from mmsearch.recipes.fusemix.config import FuseMixConfig
from mmsearch.recipes.fusemix.data_check import FUSEMIX_DATA
from mmsearch.recipes.fusemix.recipe import train_fusemix
from mmsearch.recipes.registry import register_recipe


def fusemix_smoke(task: str | None = None) -> SmokeTest:
    """Two tiny adapter trainings of 2 epochs: about a minute on 2 CPUs."""
    return SmokeTest(
        recipe=("train.epochs=2", "train.batch_size=32", "train.num_threads=1", "optim.warmup_steps=2",
                "model.out_dim=32", "model.x={depth: 1, width_factor: 1, dropout: 0.1}",
                "model.y={depth: 1, width_factor: 1, dropout: 0.1}", "eval.batch_size=256"),
        tune=("num_samples=2", "scheduler.grace_period=1", "scheduler.reduction_factor=2",
              "search_space={optim.lr: {loguniform: [3.0e-4, 3.0e-3]}, loss.mixup_alpha: {choice: [0.0, 1.0]}}",
              "resources.cpus_per_trial=0.5", "resources.reserve_cpus_for_data=0.5", "max_failures=1"),
        dataset=("source.scenes.num_scenes=80", "backend=local"),
    )


def streams_through_ray(cfg: Any) -> bool:
    """``data.backend: ray``: the trial reads its latent store through a stream factory the job hands it."""
    return cfg.data.backend == "ray"


FUSEMIX = register_recipe(Recipe(
    name="fusemix",
    fn=train_fusemix,
    config_cls=FuseMixConfig,
    epochs_key="train.epochs",
    data=FUSEMIX_DATA,
    smoke=fusemix_smoke,
    job_defaults=("data.backend=ray",),  # a Tune job's trials share the store through Ray Data
    ray_streams=streams_through_ray,
))

__all__ = ["FUSEMIX", "fusemix_smoke", "streams_through_ray"]
