"""The one-shot supernet search recipe: ``run_search(config, context)`` (:mod:`.recipe`).

Its config (:mod:`.config`), checkpointed state (:mod:`.state`), epoch lines (:mod:`.report`),
the driver-side data check (:mod:`.data_check`) and its entry in ``RECIPES``, :data:`SEARCH`
(:mod:`.entry`). ``python -m mmsearch.recipes.search CONFIG.yaml`` runs it in one process.
"""
from mmsearch.recipes.search.entry import SEARCH

__all__ = ["SEARCH"]
