"""The derived-training recipe: ``train_derived(config, context)`` (:mod:`.recipe`), from scratch.

Its config (:mod:`.config`), architecture resolution (:mod:`.arch`), model and steps
(:mod:`.engine`), data partitioning (:mod:`.data`), checkpointed state (:mod:`.state`),
prediction files (:mod:`.outputs`) and its entry in ``RECIPES``, :data:`TRAIN_DERIVED`
(:mod:`.entry`). ``python -m mmsearch.recipes.train_derived CONFIG.yaml`` runs it in one process.
"""
from mmsearch.recipes.train_derived.entry import TRAIN_DERIVED

__all__ = ["TRAIN_DERIVED"]
