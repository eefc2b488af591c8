"""How the encoder stages are executed: the seam between the pure pipeline and Ray Data.

The pipeline (``mmsearch.data.precompute.pipeline``) hands a :class:`StageSpec` (which stage, its
constructor arguments) and the stage's input columns to a :class:`StageRunner` and writes
whatever comes back. :class:`LocalRunner` runs the stage in this process, batch after batch;
``mmsearch.orchestration.precompute.RayDataRunner`` runs it as Ray Data batch inference with an
actor pool. Both call the very same stage classes, so their outputs agree.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Protocol

import numpy as np

from mmsearch.data.precompute.encode import ImageStage, TextStage
from mmsearch.progress import Progress

log = logging.getLogger(__name__)
Batch = dict[str, Any]
StageKind = Literal["image", "text"]


@dataclass(frozen=True)
class StageSpec:
    kind: StageKind
    kwargs: dict[str, Any] = field(default_factory=dict)  # constructor arguments (JSON-serialisable)

    def build(self) -> ImageStage | TextStage:
        return ImageStage(**self.kwargs) if self.kind == "image" else TextStage(**self.kwargs)

    def key(self) -> str:
        return self.kind + json.dumps(self.kwargs, sort_keys=True)

    @property
    def uses_encoder(self) -> bool:
        if self.kind == "image":
            return bool(self.kwargs.get("needs_encoder", True))
        return bool(self.kwargs.get("states") or self.kwargs.get("sentence", True))


class StageRunner(Protocol):
    name: str

    def run(self, spec: StageSpec, inputs: dict[str, Any]) -> Iterator[Batch]:
        """The stage's outputs for every input row (columns of equal length, with ``index``),
        batch by batch; every row comes back exactly once."""

    def describe(self) -> dict[str, Any]:
        """Settings worth recording in the data set card (backend, actors, batch sizes)."""


def slice_columns(columns: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    return {name: values[start:stop] for name, values in columns.items()}


class LocalRunner:
    """Stages in this process; each distinct stage is built once (encoders load once)."""

    name = "local"

    def __init__(self, image_batch: int = 64, text_batch: int = 512) -> None:
        if image_batch < 1 or text_batch < 1:
            raise ValueError("batch sizes must be >= 1")
        self.batch = {"image": image_batch, "text": text_batch}
        self._stages: dict[str, ImageStage | TextStage] = {}

    def run(self, spec: StageSpec, inputs: dict[str, Any]) -> Iterator[Batch]:
        key = spec.key()
        if key not in self._stages:
            self._stages[key] = spec.build()
        stage = self._stages[key]
        total = len(inputs["index"])
        size = self.batch[spec.kind]
        progress = Progress(f"{spec.kind} stage", total, log=log)  # a line every few seconds: rate, ETA
        for start in range(0, total, size):
            yield stage(slice_columns(inputs, start, start + size))
            progress.advance(min(total, start + size) - start)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "image_batch": self.batch["image"], "text_batch": self.batch["text"]}


def concat_inputs(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate input column dicts (numpy arrays stay arrays, lists stay lists)."""
    if not parts:
        return {}
    out: dict[str, Any] = {}
    for name in parts[0]:
        values = [p[name] for p in parts]
        out[name] = np.concatenate(values) if isinstance(values[0], np.ndarray) else [v for vs in values for v in vs]
    return out


__all__ = ["LocalRunner", "StageRunner", "StageSpec", "concat_inputs", "slice_columns"]
