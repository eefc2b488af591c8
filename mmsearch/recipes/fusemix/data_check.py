"""FuseMix's data on the driver: bind a precomputed data set's splits into the store keys, and check them.

The check opens every split's latent store as a trial will and fails before any trial starts on
a missing store or column, a dimension or an encoder that does not match the config, or a NaN /
inf in the latents, naming the key and the URI.
"""
from __future__ import annotations

from typing import Any, Mapping

from mmsearch.recipes.entry import DataBinding, DataCheckError, check_finite, set_key
from mmsearch.recipes.fusemix.config import FuseMixConfig

SPLIT_KEYS = (("train", "store"), ("val", "val_store"), ("test", "test_store"))


def bind_fusemix_data(recipe: Mapping[str, Any], root: str) -> dict[str, Any]:
    from mmsearch.data.dataset_root import DatasetRoot

    dataset = DatasetRoot(root)
    out = dict(recipe)
    for split, key in SPLIT_KEYS:
        out = set_key(out, f"data.{key}", dataset.split_uri(split))
    return out


def check_fusemix_data(cfg: FuseMixConfig) -> str:
    from mmsearch.data.store import open_store

    data = cfg.data
    columns: dict[str, int | None] = {data.x_column: cfg.model.x_dim, data.y_column: cfg.model.y_dim}
    if data.group_column:
        columns[data.group_column] = None
    rows = []
    for split, key in SPLIT_KEYS:
        uri = data.store_uri(split)
        if not uri:
            if split == "test":
                continue
            raise DataCheckError(f"data.{key} is empty: the {split} split needs a latent store")
        try:
            store = open_store(uri, expect={data.table: columns})
            check_finite(store)
        except (ValueError, OSError) as exc:
            raise DataCheckError(f"data.{key} {uri!r}: {exc}") from exc
        for column, encoder, setting in ((data.x_column, data.x_encoder, "x_encoder"), (data.y_column, data.y_encoder, "y_encoder")):
            recorded = store.table(data.table).columns[column].encoder
            if encoder is not None and recorded is not None and encoder != recorded:
                raise DataCheckError(f"data.{setting} is {encoder!r} but the {data.table}.{column} latents of data.{key} "
                                     f"{uri!r} were made by {recorded!r}: set data.{setting}={recorded}")
        rows.append(f"{split} {store.table(data.table).num_rows}")
    return f"latent pairs ({data.table}): " + ", ".join(rows) + " rows"


FUSEMIX_DATA = DataBinding(keys=tuple(f"data.{key}" for _, key in SPLIT_KEYS), bind=bind_fusemix_data,
                           check=check_fusemix_data,
                           dataset={"tables": ["pairs"]})  # image and caption latents only: no region crops

__all__ = ["FUSEMIX_DATA", "SPLIT_KEYS", "bind_fusemix_data", "check_fusemix_data"]
