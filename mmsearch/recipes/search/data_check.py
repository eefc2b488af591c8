"""The search's data on the driver: bind a precomputed data set into ``data.root``, and check it.

The check opens the data the way a trial will (``open_search_data``), resolves the config
against it, and fails before any trial starts when a part has fewer samples than one batch (with
``drop_last``) or a store holds a NaN / inf, naming the data root (and the shard file and column).
"""
from __future__ import annotations

from typing import Any, Mapping

from mmsearch.recipes.entry import DataBinding, DataCheckError, check_finite, set_key
from mmsearch.recipes.search.config import SearchConfig, resolve_config


def bind_search_data(recipe: Mapping[str, Any], root: str) -> dict[str, Any]:
    return set_key(recipe, "data.root", root)


def check_search_data(cfg: SearchConfig) -> str:
    from mmsearch.recipes.search import recipe

    try:
        data = recipe.open_search_data(cfg.data)
        resolved = resolve_config(cfg, data.info)
        s = resolved.search
        needs = {"weights": s.batch_size if s.drop_last else 1, "arch": s.arch_batch_size if s.drop_last else 1, "val": 1}
        found = {part: data.num_samples(part) for part in needs}
        for store in getattr(data, "stores", {}).values():  # generated data (root: synthetic) has none
            check_finite(store)
    except (ValueError, OSError) as exc:  # DatasetError / StoreError are ValueErrors
        raise DataCheckError(f"data {cfg.data.root!r} ({cfg.data.task}): {exc}") from exc
    short = [f"{part} has {found[part]} < {needed}" for part, needed in needs.items() if found[part] < needed]
    if short:
        raise DataCheckError(
            f"data {cfg.data.root!r} ({cfg.data.task}): too few samples ({'; '.join(short)}; batch sizes "
            f"search.batch_size={s.batch_size}, search.arch_batch_size={s.arch_batch_size})"
        )
    return f"{cfg.data.task} data at {cfg.data.root}: " + ", ".join(f"{p} {n} samples" for p, n in found.items())


SEARCH_DATA = DataBinding(keys=("data.root",), bind=bind_search_data, check=check_search_data, dataset={})

__all__ = ["SEARCH_DATA", "bind_search_data", "check_search_data"]
