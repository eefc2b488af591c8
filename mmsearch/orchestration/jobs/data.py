"""Where a job's trials get their data: the data set a job builds or reuses, bound into the recipe config.

Every recipe names its data differently (a search: ``data.root``, a data set root; FuseMix: one
latent store per split), so each recipe declares a :class:`~mmsearch.recipes.entry.DataBinding`
in its entry: the recipe keys that name the data, how to write a data set root into them, and a
check that opens the data the way the trials will, on the driver, so that missing or unfit data
fails before any trial starts, with the path in the message. This module holds no recipe's code.

The data set itself comes from the job's ``dataset`` section through ``ensure_dataset``: built
on first use (Ray Data batch inference on the cluster, or in this process with
``backend: local``) and reused by every later job that asks for the same data. It goes to
``dataset.output``; else, when experiments go to S3, next to them
(``<storage>/datasets/<name>-<fingerprint>``, readable from every node); else to this machine's
cache (``$MMSEARCH_CACHE``, else ``~/.cache/mmsearch``). On a cluster of several machines with
NFS storage, point ``dataset.output`` at the NFS mount too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from mmsearch.config import ConfigError
from mmsearch.data.precompute.config import PrecomputeConfig
from mmsearch.recipes.entry import DataBinding


def place_dataset(dataset: PrecomputeConfig, storage_root: Any) -> PrecomputeConfig:
    """Where the data set goes: its ``output``; else, when experiments go to S3, next to them in
    ``<storage>/datasets/<name>-<fingerprint>`` (every node can read it, every job with the same
    storage reuses it); else this machine's cache."""
    if dataset.output or not storage_root.is_s3:
        return dataset
    from mmsearch.config import replace
    from mmsearch.data.precompute.config import storage_key

    return replace(dataset, output=f"{storage_root.uri}/datasets/{dataset.name}-{storage_key(dataset)}")


def dataset_uri(dataset: PrecomputeConfig) -> str:
    """The data set's root URI, computed without touching storage."""
    from mmsearch.data.dataset_root import cache_root
    from mmsearch.data.precompute.config import storage_key

    uri = dataset.output or cache_root(dataset.name, storage_key(dataset))
    return uri.rstrip("/") if uri.startswith("s3://") else str(Path(uri).expanduser().resolve())


def dataset_complete(dataset: PrecomputeConfig) -> bool:
    """Whether the data set is built (its card is there, with this config's fingerprint)."""
    from mmsearch.data.precompute import dataset_root_of
    from mmsearch.data.precompute.config import fingerprint

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


__all__ = ["bind_data", "build_dataset", "dataset_complete", "dataset_uri", "place_dataset"]
