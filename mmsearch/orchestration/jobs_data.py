"""Where a job's trials get their data: bind a precomputed data set into the recipe config, and check it.

Every recipe names its data differently (a search: ``data.root``, a data set root; FuseMix: one
latent store per split), so each job has a :class:`DataBinding`: the recipe keys that name the
data, how to write a data set root into them, and a check that opens the data the way the
trials will, on the driver, so that a missing root, a missing store or column, a dimension or
(FuseMix) an encoder that does not match, or a NaN / inf in the latents fails before any trial
starts, with the path (and for a NaN the shard file and column) in the message.

The data set itself comes from the job's ``dataset`` section through ``ensure_dataset``: built
on first use (Ray Data batch inference on the cluster, or in this process with
``backend: local``) and reused by every later job that asks for the same data. It goes to
``dataset.output``; else, when experiments go to S3, next to them
(``<storage>/datasets/<name>-<fingerprint>``, readable from every node); else to this machine's
cache (``$MMSEARCH_CACHE``, else ``~/.cache/mmsearch``). On a cluster of several machines with
NFS storage, point ``dataset.output`` at the NFS mount too.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping

from mmsearch.config import ConfigError
from mmsearch.data.dataset_root import DatasetRoot
from mmsearch.data.precompute_config import PrecomputeConfig
from mmsearch.orchestration.search_space import set_dotted
from mmsearch.recipes.fusemix_config import FuseMixConfig
from mmsearch.recipes.search_config import SearchConfig, resolve_config


class DataCheckError(ValueError):
    """The data a job's trials would read is missing or does not fit the config."""


@dataclasses.dataclass(frozen=True)
class DataBinding:
    keys: tuple[str, ...]  # recipe keys naming the data; overriding one means "use that data as is"
    bind: Callable[[Mapping[str, Any], str], dict[str, Any]]  # recipe data with a data set root written in
    check: Callable[[Any], str]  # opens the data of a validated recipe config; returns a one-line description


def check_finite(store: Any) -> None:
    """Every float column of every table of ``store`` holds finite values; raises StoreError naming
    the table, column, shard file and row of the first NaN / inf. Reads the whole store once, on
    the driver: the precompute writer refuses non-finite latents, so this catches stores written
    or changed by anything else before every trial fails on them."""
    for name in store.tables:
        store.table(name).check_finite()


def _bind_search(recipe: Mapping[str, Any], root: str) -> dict[str, Any]:
    return set_dotted(dict(recipe), "data.root", root)


def _check_search(cfg: SearchConfig) -> str:
    from mmsearch.recipes.search import open_search_data

    try:
        data = open_search_data(cfg.data)
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


def _bind_fusemix(recipe: Mapping[str, Any], root: str) -> dict[str, Any]:
    dataset = DatasetRoot(root)
    out = dict(recipe)
    for split, key in (("train", "store"), ("val", "val_store"), ("test", "test_store")):
        out = set_dotted(out, f"data.{key}", dataset.split_uri(split))
    return out


def _check_fusemix(cfg: FuseMixConfig) -> str:
    from mmsearch.data.store import open_store

    data = cfg.data
    columns: dict[str, int | None] = {data.x_column: cfg.model.x_dim, data.y_column: cfg.model.y_dim}
    if data.group_column:
        columns[data.group_column] = None
    rows = []
    for split, key in (("train", "store"), ("val", "val_store"), ("test", "test_store")):
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


SEARCH_DATA = DataBinding(keys=("data.root",), bind=_bind_search, check=_check_search)
FUSEMIX_DATA = DataBinding(keys=("data.store", "data.val_store", "data.test_store"), bind=_bind_fusemix,
                           check=_check_fusemix)


def place_dataset(dataset: PrecomputeConfig, storage_root: Any) -> PrecomputeConfig:
    """Where the data set goes: its ``output``; else, when experiments go to S3, next to them in
    ``<storage>/datasets/<name>-<fingerprint>`` (every node can read it, every job with the same
    storage reuses it); else this machine's cache."""
    if dataset.output or not storage_root.is_s3:
        return dataset
    from mmsearch.config import replace
    from mmsearch.data.precompute_config import fingerprint

    return replace(dataset, output=f"{storage_root.uri}/datasets/{dataset.name}-{fingerprint(dataset)}")


def dataset_uri(dataset: PrecomputeConfig) -> str:
    """The data set's root URI, computed without touching storage."""
    from mmsearch.data.dataset_root import cache_root
    from mmsearch.data.precompute_config import fingerprint

    uri = dataset.output or cache_root(dataset.name, fingerprint(dataset))
    return uri.rstrip("/") if uri.startswith("s3://") else str(Path(uri).expanduser().resolve())


def dataset_complete(dataset: PrecomputeConfig) -> bool:
    """Whether the data set is built (its card is there, with this config's fingerprint)."""
    from mmsearch.data.precompute import dataset_root_of
    from mmsearch.data.precompute_config import fingerprint

    root = dataset_root_of(dataset)
    return root.has_card() and root.read_card().fingerprint == fingerprint(dataset)


def build_dataset(dataset: PrecomputeConfig) -> str:
    """Build the data set (Ray Data batch inference, or in this process with ``backend: local``)."""
    from mmsearch.orchestration.precompute import ensure_dataset

    print(f"Building data set {dataset.name!r} at {dataset_uri(dataset)} (first use; later jobs reuse it)", flush=True)
    return ensure_dataset(dataset)


def bind_data(binding: DataBinding, recipe: Mapping[str, Any], root: str | None) -> dict[str, Any]:
    """The recipe section with ``root`` bound (or as it is when ``root`` is None)."""
    if root is None:
        return dict(recipe)
    if not root:
        raise ConfigError("--data-root is empty")
    return binding.bind(recipe, root)


__all__ = [
    "FUSEMIX_DATA",
    "SEARCH_DATA",
    "DataBinding",
    "DataCheckError",
    "bind_data",
    "check_finite",
    "build_dataset",
    "dataset_complete",
    "dataset_uri",
    "place_dataset",
]
