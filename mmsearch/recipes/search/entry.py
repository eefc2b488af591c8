"""The search recipe's entry in ``RECIPES``: ``run_search`` and what a job needs to run it."""
from __future__ import annotations

from mmsearch.recipes.entry import Recipe, SmokeTest
from mmsearch.recipes.registry import register_recipe
from mmsearch.recipes.search.config import SearchConfig
from mmsearch.recipes.search.data_check import SEARCH_DATA
from mmsearch.recipes.search.recipe import run_search


def search_smoke(task: str | None) -> SmokeTest:
    """Tiny data set and supernet, 2 epochs (1 warm-up), rungs at epoch 1 and 2: about a minute on 2 CPUs."""
    from mmsearch.tasks import task_entry

    val = task_entry(task or "vqa").smoke_val_samples
    return SmokeTest(
        recipe=(
            "search.epochs=2", "search.warmup_epochs=1", "search.arch_every=2", "search.batch_size=16",
            "search.arch_batch_size=16", "search.max_steps_per_epoch=8",
            "model.hidden=32", "model.head_dim=16", "model.relation_dim=16",
            "model.enc_depth=2", "model.dec_depth=2", "head.flat_mlp_size=32",
            f"data.limit={{weights: 256, arch: 64, val: {val}}}", f"eval.batch_size={val}",
        ),
        tune=("num_samples=1", "scheduler.grace_period=1", "scheduler.reduction_factor=2",
              "resources.cpus_per_trial=0.5", "resources.reserve_cpus_for_data=0", "max_failures=1"),
        dataset=("source.scenes.num_scenes=80", "backend=local"),
    )


SEARCH = register_recipe(Recipe(
    name="search",
    fn=run_search,
    config_cls=SearchConfig,
    epochs_key="search.epochs",
    data=SEARCH_DATA,
    smoke=search_smoke,
    ray_streams=lambda cfg: cfg.data.regions == "stream",  # under Tune, region rows through Ray Data
))

__all__ = ["SEARCH", "search_smoke"]
