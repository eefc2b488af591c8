"""The one-shot estimate of architectures: a finished search's supernet scores each one on val.

Each architecture runs as a single path through the supernet's shared weights
(``Supernet.fixed_plan``) on the search's validation part; the estimate is the task's primary
metric there. This is what the search itself compares architectures by, so scoring it against the
oracle (:func:`mmsearch.evaluation.score_estimator`) says how rank-faithful the search is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from mmsearch.tasks import build_head, evaluate
from mmsearch.nas import ArchSpec, Supernet
from mmsearch.recipes.search.config import SearchConfig, resolve_config, supernet_config
from mmsearch.recipes.search.state import STATE_NAME


def load_supernet(cfg: SearchConfig, output_dir: str | Path, info: Any) -> tuple[Supernet, torch.nn.Module, SearchConfig]:
    """The supernet and head of the search run in ``output_dir`` (its latest checkpoint), in eval mode."""
    out = Path(output_dir)
    cfg = resolve_config(cfg, info)
    latest = (out / "latest_checkpoint").read_text().strip()
    state = torch.load(out / "checkpoints" / latest / STATE_NAME, map_location="cpu", weights_only=True)
    embedding = info.embedding_init if cfg.data.text_input == "tokens" else None
    supernet = Supernet(supernet_config(cfg), None if embedding is None else torch.as_tensor(embedding).float())
    head = build_head(cfg.head, cfg.model.hidden, layer_norm=cfg.model.layer_norm)
    supernet.load_state_dict(state["supernet"])
    head.load_state_dict(state["head"])
    return supernet.eval(), head.eval(), cfg


def supernet_estimates(cfg: SearchConfig, output_dir: str | Path, data: Any, specs: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """label -> the search's supernet's val primary metric of each architecture in ``specs``."""
    supernet, head, cfg = load_supernet(cfg, output_dir, data.info)
    return score_paths(supernet, head, cfg, data, {label: ArchSpec.from_dict(spec) for label, spec in specs.items()})


def score_paths(supernet: Supernet, head: torch.nn.Module, cfg: SearchConfig, data: Any, specs: Mapping[str, ArchSpec]) -> dict[str, float]:
    """label -> val primary metric of each architecture as a single path through ``supernet`` (in eval mode)."""
    scores = {}
    for label, spec in specs.items():
        plan = supernet.fixed_plan(spec)
        with torch.inference_mode():
            batches = data.batches("val", batch_size=cfg.eval.batch_size, shuffle=False)
            values = evaluate(cfg.head, lambda batch, plan=plan: supernet(batch, head, plan), batches)
        scores[label] = float(values[cfg.primary_metric])
    return scores


__all__ = ["load_supernet", "score_paths", "supernet_estimates"]
