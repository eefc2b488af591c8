"""Reference baselines that show what the benchmark data demands: a text-only, an image-only
and a simple fused model for VQA, ITM and VG.

Every baseline is an ``nn.Module`` with ``forward(batch: MultimodalBatch) -> head outputs`` in
the contract of :mod:`mmsearch.heads`, so all of them train with the real task objectives and
are scored by the real metrics (:mod:`mmsearch.baselines.training`)::

    model = build_baseline("text_only", DataSizes.from_info(task_data.info), Widths())
    result = train_and_select(model, task_data, TrainBudget(epochs=8))   # val-selected, test metrics

========== ====================================================== ==========================
name       model                                                  sees
========== ====================================================== ==========================
text_only  token embedding + LSTM + attentional pooling            text only
image_only region feature + box embedding + attentional pooling    regions (features, boxes)
mcan       small MCAN (``mcan`` spec cut to ``depth`` layers)      both
concat     pooled text ; pooled image -> MLP (feature concat.)     both, fused after pooling
late       text_only + image_only ensemble, scores combined        both, never fused in a model
========== ====================================================== ==========================

``concat`` and ``late`` are the two fusion baselines of issue 9 (:mod:`.concat_fusion`,
:mod:`.late_fusion`, whose docstring gives the combination per task: averaged probabilities for
VQA, the analogous combination for ITM and VG).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from mmsearch.baselines.concat_fusion import ConcatFusionBaseline
from mmsearch.baselines.fused import FusedMCANBaseline, small_mcan_spec
from mmsearch.baselines.image_only import ImageOnlyBaseline
from mmsearch.baselines.late_fusion import LateFusionBaseline
from mmsearch.baselines.sizes import BASELINE_TASKS, DataSizes, Widths
from mmsearch.baselines.text_only import TextOnlyBaseline
from mmsearch.registry import Registry

BASELINES: Registry[Callable[[DataSizes, Widths], nn.Module]] = Registry("baseline")
BASELINES.add("text_only", TextOnlyBaseline, aliases=("question_only",))
BASELINES.add("image_only", ImageOnlyBaseline)
BASELINES.add("mcan", FusedMCANBaseline, aliases=("fused",))
BASELINES.add("concat", ConcatFusionBaseline, aliases=("concat_mlp", "feature_concat"))
BASELINES.add("late", LateFusionBaseline, aliases=("late_fusion", "ensemble"))


def build_baseline(name: str, sizes: DataSizes, widths: Widths = Widths()) -> nn.Module:
    """The baseline ``name`` (see :data:`BASELINES`) for ``sizes.task``."""
    return BASELINES.get(name)(sizes, widths)


__all__ = [
    "BASELINES",
    "BASELINE_TASKS",
    "ConcatFusionBaseline",
    "LateFusionBaseline",
    "DataSizes",
    "FusedMCANBaseline",
    "ImageOnlyBaseline",
    "TextOnlyBaseline",
    "Widths",
    "build_baseline",
    "small_mcan_spec",
]
