"""Builders shared by the ``test_precompute_*`` and ``test_tasks_*`` files (no tests here).

The small embedded data set is built once per test session: every module asks
:func:`shared_scenes` for it, and ``precompute`` is idempotent, so only the first call builds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mmsearch.config import load_config
from mmsearch.data.precompute import PrecomputeResult, precompute
from mmsearch.data.precompute.config import PrecomputeConfig
from mmsearch.data.scenes import SceneConfig, build_scene_dataset

SMALL_SCENES = 24  # train 17, val 2, test 5 images


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def scenes_config(output: str | Path, num_scenes: int = SMALL_SCENES, **changes: Any) -> PrecomputeConfig:
    """A small local-backend scenes config writing to ``output`` (states on, small batches)."""
    base = {
        "source": {"scenes": {"num_scenes": num_scenes}},
        "output": str(output),
        "backend": "local",
        "text": {"states": True},
        "local_batch": 8,
    }
    return load_config(PrecomputeConfig, _merge(base, changes))


def shared_scenes(tmp_path_factory) -> PrecomputeResult:
    """The session's small precomputed scenes data set (built on the first call)."""
    return precompute(scenes_config(tmp_path_factory.getbasetemp() / "shared_scenes"))


def scene_records(num_scenes: int = SMALL_SCENES):
    return build_scene_dataset(SceneConfig(num_scenes=num_scenes))
