"""Precomputed data sets: records -> frozen encoders -> one latent store per split + card (no Ray here).

- ``pipeline``: ``precompute(cfg)``, idempotent, with the stages run by a ``StageRunner``;
- ``config``: ``PrecomputeConfig`` (which data, which encoders, which tables) and its ``fingerprint``;
- ``records``: records -> encoder inputs and table rows; ``tables``: the tables of a split store;
- ``encode``: the image and text encoder stages; ``runner``: how stages run (this process; Ray Data
  in ``mmsearch.orchestration.precompute``); ``arrow``: stage batches <-> Arrow tables;
- ``benchmark``: region crop size against feature quality per second (``python -m``).

The names below are imported from their modules on first use, so ``precompute.config`` can be
imported without the encoders (torch).
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmsearch.data.precompute.pipeline import (BUA_ENCODER, PrecomputeResult, dataset_root_of,
                                                   other_dataset_error, precompute, resolve_tables)

_HOME = dict.fromkeys(("BUA_ENCODER", "PrecomputeResult", "dataset_root_of", "other_dataset_error", "precompute",
                       "resolve_tables"), "pipeline")  # exported name -> the module that defines it


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = sorted(_HOME)
