"""The FuseMix adapter-training recipe: ``train_fusemix(config, context)`` (:mod:`.recipe`).

Its config (:mod:`.config`), data streams (:mod:`.data`), optimiser (:mod:`.optim`),
checkpoints (:mod:`.checkpoint`), the driver-side data check (:mod:`.data_check`) and its entry
in ``RECIPES``, :data:`FUSEMIX` (:mod:`.entry`).
"""
from mmsearch.recipes.fusemix.entry import FUSEMIX

__all__ = ["FUSEMIX"]
