"""Which architecture to train: a named spec, a spec file, or the best one of a finished search.

:func:`resolve_arch` accepts, in this order:

* a dict: a parsed spec (``ArchSpec.to_dict()``, MMnas's genotype, or a fusion spec's ``blocks``);
* a name of a shipped spec (``mcan``, ``mmnas_vqa``, ``mmnas_vg``, ``mmnas_itm``, ``fusion_<pattern>``);
* a spec JSON file (ours, or MMnas's ``{"epochN": genotype}`` files; the latest epoch);
* a directory (local path or ``s3://``): a search's output directory (its ``best_arch.json``),
  a Tune search experiment (``experiment_summary.json``: the best trial's ``best_arch.json``), or
  a checkpoint directory (its ``arch.json``).

Every failure names what was looked for, so a typo fails on the driver, before any worker starts.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Mapping

import pyarrow.fs as pafs

from mmsearch import storage
from mmsearch.nas import ArchSpec, FusionSpec, load_spec, shipped_spec, shipped_spec_names, spec_from_dict

AnySpec = ArchSpec | FusionSpec

BEST_ARCH = "best_arch.json"  # written by the search recipe (best validation epoch after warm-up)
FINAL_ARCH = "final_arch.json"
SUMMARY = "experiment_summary.json"  # written by mmsearch.orchestration.experiment
CHECKPOINT_ARCH = "arch.json"  # inside search and training checkpoints


class ArchNotFoundError(FileNotFoundError):
    """``arch`` names nothing this module can read an architecture from."""


def resolve_arch(arch: str | Mapping[str, Any] | AnySpec) -> AnySpec:
    """The :class:`~mmsearch.nas.ArchSpec` or :class:`~mmsearch.nas.FusionSpec` that ``arch`` names (see the module docstring)."""
    if isinstance(arch, (ArchSpec, FusionSpec)):
        return arch
    if isinstance(arch, Mapping):
        try:
            return spec_from_dict(arch)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"invalid architecture in the config: {exc}") from None
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"arch must be a spec name, a file or a directory, got {arch!r}")
    if arch in shipped_spec_names():
        return shipped_spec(arch)
    location = storage.resolve_storage(arch)
    kind = storage.file_info(location).type
    if kind == pafs.FileType.File:
        return _load_file(location)
    if kind == pafs.FileType.Directory:
        return _from_directory(location)
    raise ArchNotFoundError(
        f"arch {arch!r} is neither a named spec ({', '.join(shipped_spec_names())}) nor an existing file or directory"
    )


def _exists(location: storage.StorageLocation, name: str) -> bool:
    return storage.is_file(location.child(name))


def _load_file(location: storage.StorageLocation) -> AnySpec:
    if not location.is_s3:
        return load_spec(location.fs_path)
    data = storage.read_bytes(location)  # MMnas's epoch files need load_arch_spec's parser
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / Path(location.fs_path).name
        local.write_bytes(data)
        return load_spec(local).replace(source=location.uri)


def _from_directory(location: storage.StorageLocation) -> AnySpec:
    if _exists(location, BEST_ARCH):
        return _load_file(location.child(BEST_ARCH))
    if _exists(location, SUMMARY):
        return _best_trial_arch(location)
    if _exists(location, CHECKPOINT_ARCH):
        return _load_file(location.child(CHECKPOINT_ARCH))
    hint = ""
    if _exists(location, FINAL_ARCH):
        hint = (f"; it has {FINAL_ARCH} (the search never left warm-up, so there is no best architecture): "
                f"pass {location.child(FINAL_ARCH).uri} to train that one")
    raise ArchNotFoundError(
        f"{location.uri} holds no architecture: expected {BEST_ARCH} (a search's output directory), "
        f"{SUMMARY} (a search experiment) or {CHECKPOINT_ARCH} (a checkpoint){hint}"
    )


def _best_trial_arch(experiment: storage.StorageLocation) -> AnySpec:
    summary = json.loads(storage.read_bytes(experiment.child(SUMMARY)))
    best = summary.get("best")
    if not best:
        raise ArchNotFoundError(f"{experiment.child(SUMMARY).uri}: no trial reported the metric, so there is no best trial")
    trial = next((t for t in summary.get("trials", []) if t.get("trial_id") == best.get("trial_id")), None)
    if trial is None or not trial.get("path"):
        raise ArchNotFoundError(f"{experiment.child(SUMMARY).uri}: the best trial {best.get('trial_id')!r} has no directory")
    trial_dir = storage.resolve_storage(trial["path"], experiment.endpoint_url)
    if not _exists(trial_dir, BEST_ARCH):
        raise ArchNotFoundError(
            f"the best trial {best['trial_id']} of {experiment.uri} ({summary.get('metric')} = {best.get('metric')}) "
            f"has no {BEST_ARCH} in {trial_dir.uri}"
        )
    spec = _load_file(trial_dir.child(BEST_ARCH))
    return spec.replace(source=f"{experiment.uri} trial {best['trial_id']} {BEST_ARCH}")


def search_outcome(arch: str | Any) -> dict[str, Any] | None:
    """What the search reported for the architecture ``arch`` picks, when ``arch`` names a search:
    ``{"metric": "val_vqa_acc", "value": ..., "epoch": ..., "source": ...}`` (the validation metric
    of the best architecture with the supernet's shared weights), else None."""
    if not isinstance(arch, str) or arch in shipped_spec_names():
        return None
    location = storage.resolve_storage(arch)
    if storage.file_info(location).type != pafs.FileType.Directory:
        return None
    if _exists(location, "search_result.json"):
        found = json.loads(storage.read_bytes(location.child("search_result.json")))
        return {"metric": found.get("metric"), "value": found.get("best_val_metric"), "epoch": found.get("best_epoch"),
                "source": location.child("search_result.json").uri}
    if _exists(location, SUMMARY):
        summary = json.loads(storage.read_bytes(location.child(SUMMARY)))
        best = summary.get("best") or {}
        return {"metric": summary.get("metric"), "value": best.get("metric"), "epoch": best.get("epoch"),
                "trial_id": best.get("trial_id"), "source": location.child(SUMMARY).uri}
    return None


# The network-shaping widths a spec's recorded config (``spec.config["model"]``) may state.
SPEC_WIDTH_KEYS = ("hidden", "head_dim", "ffn_mult", "relation_dim")


def spec_width_differences(spec: ArchSpec, model: Any) -> list[str]:
    """One line per width the spec's recorded config states differently from ``model`` (the
    training config's model section). Training uses the config's widths: searching narrow and
    training wide is common (MMnas: 256 -> 512), but a spec that says otherwise should not pass
    unnoticed. Empty when the spec records no config."""
    recorded = spec.config.get("model") if isinstance(spec.config, Mapping) else None
    if not isinstance(recorded, Mapping):
        return []
    lines = []
    for key in SPEC_WIDTH_KEYS:
        stated, used = recorded.get(key), getattr(model, key, None)
        if stated is not None and stated != used:
            lines.append(f"architecture {spec.source or '(inline spec)'} records model.{key}={stated!r}; this run "
                         f"trains with the config's model.{key}={used!r} (override model.{key}=... to match)")
    return lines


__all__ = ["ArchNotFoundError", "BEST_ARCH", "CHECKPOINT_ARCH", "SPEC_WIDTH_KEYS", "SUMMARY", "resolve_arch", "search_outcome",
           "spec_width_differences"]
