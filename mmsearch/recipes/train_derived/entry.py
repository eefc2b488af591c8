"""The derived-training recipe's entry in ``RECIPES``: ``train_derived`` and what a job needs to run it.

Its job (``jobs/train_derived.py``) runs it under Ray Train; the search jobs' shortlist and
``--then-train`` run it under Tune.
"""
from __future__ import annotations

from typing import Any, Mapping

from mmsearch.recipes.entry import DataBinding, DataCheckError, Recipe, SmokeTest, check_finite, set_key
from mmsearch.recipes.registry import register_recipe
from mmsearch.recipes.train_derived.config import TrainDerivedConfig, resolve_config
from mmsearch.recipes.train_derived.recipe import check_data, open_train_data, train_derived

# A run that checks the whole path in about a minute: generated data, a small network, 2 epochs
# (with --deepspeed: no JIT build of DeepSpeed's CPU collective op).
TRAIN_SMOKE = SmokeTest(recipe=(
    "data.root=synthetic",
    "data.limit={}",
    "model.hidden=32",
    "model.head_dim=16",
    "model.word_dim=16",
    "head.flat_mlp_size=32",
    "train.epochs=2",
    "train.batch_size=16",
    "train.max_steps_per_epoch=5",
    "eval.batch_size=64",
    "scaling.deepspeed_shm_op=false",
))


def bind_train_data(recipe: Mapping[str, Any], root: str) -> dict[str, Any]:
    return set_key(recipe, "data.root", root)


def check_train_data(cfg: TrainDerivedConfig) -> str:
    """Open the data as the workers will, resolve the config against it, check the sizes and the latents."""
    try:
        data = open_train_data(cfg.data)
        resolved = resolve_config(cfg, data.info)
        check_data(data, resolved, resolved.scaling.num_workers)
        for store in getattr(data, "stores", {}).values():  # generated data (root: synthetic) has none
            check_finite(store)
    except (ValueError, OSError) as exc:
        raise DataCheckError(f"data {cfg.data.root!r} ({cfg.data.task}): {exc}") from exc
    return f"{cfg.data.task} data at {cfg.data.root}: train {data.num_samples('train')} samples"


TRAIN_DERIVED = register_recipe(Recipe(
    name="train_derived",
    fn=train_derived,
    config_cls=TrainDerivedConfig,
    epochs_key="train.epochs",
    data=DataBinding(keys=("data.root",), bind=bind_train_data, check=check_train_data),
    smoke=lambda task: TRAIN_SMOKE,
))

__all__ = ["TRAIN_DERIVED", "TRAIN_SMOKE", "bind_train_data", "check_train_data"]
