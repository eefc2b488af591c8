"""Evaluation of a trained derived network, and the prediction files it writes.

:func:`evaluate_split` computes the task's metrics on a split (``mmsearch.tasks.evaluate``) and,
in the same pass, the predictions a results file needs. :func:`write_predictions` writes them,
atomically, under ``<output_dir>/predictions/``: the task's results file (its entry's
``ResultFile``, e.g. VQA: ``<split>_vqa_results.json`` in the official VQA results format, VG:
``<split>_vg_boxes.json``, ITM: ``<split>_itm_retrieval.json`` with the retrieval metrics) and,
for every task, ``<split>_metrics.json`` with the split's metrics.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmsearch.batch import MultimodalBatch, first_samples
from mmsearch.tasks import HeadConfig, evaluate, predict, task_entry
from mmsearch.io import atomic_write_json
from mmsearch.data.task_data import TaskData, TaskInfo
from mmsearch.config import load_config
from mmsearch.recipes.search.recipe import open_search_data
from mmsearch.recipes.train_derived.config import TrainDerivedConfig, resolve_config
from mmsearch.recipes.train_derived.engine import (DerivedModel, autocast_context, autocast_dtype, build_model,
                                                   load_model_weights, resolve_device)
from mmsearch.recipes.train_derived.state import read_state

PREDICTIONS_DIR = "predictions"


def _plain(value: Any) -> Any:
    """numpy / torch scalars -> Python scalars, for JSON."""
    return value.item() if hasattr(value, "item") else value


class _Recorder:
    """Wraps the network's forward; records the predictions of every batch it runs (tasks whose
    results file has rows: VQA, VG)."""

    def __init__(self, head: HeadConfig, info: TaskInfo, model: DerivedModel) -> None:
        self.head, self.info, self.model = head, info, model
        self.results = task_entry(head.task).results
        self.rows: list[dict[str, Any]] = []
        self._seen = 0

    def _ids(self, batch: MultimodalBatch) -> list[Any]:
        for key in self.results.id_keys:
            if key in batch.meta:
                return [_plain(v) for v in batch.meta[key]]
        return list(range(self._seen, self._seen + batch.batch_size))  # positions in the split

    def __call__(self, batch: MultimodalBatch) -> dict[str, torch.Tensor]:
        outputs = self.model(batch)
        if self.results.rows is None:
            return outputs  # e.g. ITM: retrieval scores pairs the evaluation builds itself; metrics only
        predicted = predict(self.head, {k: v.float() for k, v in outputs.items()}, batch)
        self.rows += self.results.rows(predicted, self._ids(batch), self.info)
        self._seen += batch.batch_size
        return outputs


@torch.no_grad()
def evaluate_split(model: DerivedModel, head: HeadConfig, data: TaskData, split: str, *, batch_size: int,
                   device: torch.device, autocast: Any, max_samples: int | None = None,
                   predictions: bool = False) -> tuple[dict[str, float], list[dict[str, Any]] | None]:
    """``(metrics, prediction rows or None)`` of ``model`` on ``split`` ("val" or "test"), in eval mode."""
    was_training = model.training
    model.eval()
    recorder = _Recorder(head, data.info, model)
    run = recorder if predictions else model
    try:
        batches = first_samples(data.batches(split, batch_size=batch_size, shuffle=False), max_samples)  # type: ignore[arg-type]
        with torch.inference_mode(), autocast:
            metrics = evaluate(head, run, (batch.to(device, non_blocking=True) for batch in batches))
    finally:
        model.train(was_training)
    rows = recorder.rows if predictions and recorder.results.rows is not None else None
    return metrics, rows


def write_predictions(output_dir: Path, task: str, split: str, metrics: dict[str, float],
                      rows: list[dict[str, Any]] | None) -> dict[str, str]:
    """Write the split's results file (see the module docstring) and its metrics; returns their paths."""
    folder = Path(output_dir) / PREDICTIONS_DIR
    result_file = task_entry(task).results
    results = folder / result_file.name(split)
    atomic_write_json(results, metrics if result_file.rows is None else (rows or []))
    metrics_file = atomic_write_json(folder / f"{split}_metrics.json", metrics)
    return {f"{split}_results": str(results), f"{split}_metrics": str(metrics_file)}


__all__ = ["PREDICTIONS_DIR", "evaluate_split", "write_predictions"]


def evaluate_checkpoint(checkpoint_dir: str | Path, *, splits: tuple[str, ...] = ("test",), task_data: TaskData | None = None,
                        output_dir: str | Path | None = None, device: str = "auto",
                        data_root: str | None = None) -> dict[str, dict[str, float]]:
    """Evaluate a training checkpoint on ``splits`` and write their prediction files.

    Needs nothing but the checkpoint (its config, architecture and weights) and the data
    (``task_data``, or the config's ``data.root`` / ``data_root``). Files go to ``output_dir``
    (default: the checkpoint directory). Returns ``{split: metrics}``.
    """
    directory = Path(checkpoint_dir)
    state = read_state(directory)
    saved = dict(state["config"])
    if data_root is not None:
        saved["data"] = {**saved["data"], "root": data_root}
    cfg = load_config(TrainDerivedConfig, saved)
    data = task_data if task_data is not None else open_search_data(cfg.data)
    cfg = resolve_config(cfg, data.info)
    model = build_model(cfg, data.info)
    load_model_weights(model, directory)
    target = resolve_device(device)
    model.to(target)
    dtype = autocast_dtype(cfg.train.precision, target)
    out = Path(output_dir) if output_dir is not None else directory
    results = {}
    assert cfg.head is not None
    for split in splits:
        values, rows = evaluate_split(model, cfg.head, data, split, batch_size=cfg.eval.batch_size, device=target,
                                      autocast=autocast_context(target, dtype), predictions=True)
        write_predictions(out, cfg.data.task, split, values, rows)
        results[split] = values
    return results
