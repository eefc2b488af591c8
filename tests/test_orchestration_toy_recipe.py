"""A toy recipe for the orchestration tests, registered in ``RECIPES`` as ``toy``, and its own contract tests (no Ray).

The module is all it takes to add a recipe: the recipe function, its config class and the
:class:`~mmsearch.recipes.entry.Recipe` entry below (fidelity key, no data, smoke-test overrides);
``tests/test_toy_recipe_job.py`` runs it under Tune through the generic job code.

"Training" is gradient descent on f(w) = w^2 / 2 from w = 4: the per-epoch loss falls faster
with a larger learning rate, plus optional noise drawn from a generator seeded by (seed,
epoch), so an epoch's result is the same whether or not the run was interrupted before it.
It checkpoints its state every epoch, restores exactly, records every invocation in its
output directory (``start_<epoch>_<id>.txt``), and can fail once at a chosen epoch (the
marker file makes the failure happen once per trial) to exercise Tune's retries.
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from mmsearch.config import ConfigError, config_dataclass, validate_config
from mmsearch.recipes.context import LocalContext
from mmsearch.recipes.entry import Recipe, SmokeTest
from mmsearch.recipes.registry import RECIPES, register_recipe


@config_dataclass
class ToyTrain:
    lr: float = 0.1
    epochs: int = 4
    noise: float = 0.0
    width: int = 8  # unused by the maths; lets tests tune an integer/choice field
    warmup_epochs: int = 0  # first epochs reported as warm-up (``warmup: 1``), as a search's before its architecture trains
    # Trials that must be seen running side by side: each first start waits (up to 120 s) until
    # ``start_together`` trials have started (marker files in ``sync_dir``), however loaded the machine.
    start_together: int = 0
    sync_dir: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.lr < 2:
            raise ValueError(f"train.lr must be in (0, 2) (got {self.lr})")


@config_dataclass
class ToyFaults:
    fail_at_epoch: int | None = None  # raise once (per trial) before reporting this epoch
    fail_lr: float | None = None  # only the trial with this learning rate fails (None: every trial)
    marker_dir: str | None = None  # where the once-only marker files go


@config_dataclass
class ToyConfig:
    seed: int = 0
    train: ToyTrain = ToyTrain()
    faults: ToyFaults = ToyFaults()


class InjectedFailure(RuntimeError):
    pass


def toy_recipe(cfg: ToyConfig, context=None) -> dict:
    """Train the toy model; returns the final state."""
    if context is None:
        context = LocalContext(tempfile.mkdtemp(prefix="toy-"))
    state = {"epoch": 0, "w": 4.0}
    restored = context.restored_checkpoint()
    if restored is not None:
        state = json.loads((Path(restored) / "state.json").read_text())
    (context.output_dir / f"start_{state['epoch']:03d}_{uuid.uuid4().hex[:8]}.txt").write_text("started\n")
    if cfg.train.start_together and cfg.train.sync_dir and restored is None:
        _wait_for_peers(Path(cfg.train.sync_dir), cfg.train.start_together)
    for epoch in range(state["epoch"] + 1, cfg.train.epochs + 1):
        noise = np.random.default_rng([cfg.seed, epoch]).normal() * cfg.train.noise
        w = state["w"] * (1.0 - cfg.train.lr) + noise
        state = {"epoch": epoch, "w": w}
        if cfg.faults.fail_at_epoch == epoch and cfg.faults.fail_lr in (None, cfg.train.lr):
            marker = Path(cfg.faults.marker_dir or context.output_dir) / f"failed_seed{cfg.seed}_lr{cfg.train.lr}"
            if not marker.exists():
                marker.write_text(f"failed at epoch {epoch}\n")
                raise InjectedFailure(f"injected failure at epoch {epoch}")
        with tempfile.TemporaryDirectory() as ckpt:
            (Path(ckpt) / "state.json").write_text(json.dumps(state))
            context.report({"epoch": epoch, "loss": 0.5 * w * w, "w": w, "warmup": int(epoch <= cfg.train.warmup_epochs)},
                           Path(ckpt))
    return state


def _wait_for_peers(sync_dir: Path, count: int, timeout_s: float = 120.0) -> None:
    import time

    sync_dir.mkdir(parents=True, exist_ok=True)
    (sync_dir / uuid.uuid4().hex).write_text("started\n")
    deadline = time.monotonic() + timeout_s
    while len(list(sync_dir.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.05)


TOY = Recipe(
    name="toy",
    fn=toy_recipe,
    config_cls=ToyConfig,
    epochs_key="train.epochs",
    smoke=lambda task: SmokeTest(recipe=("train.epochs=2",), tune=("num_samples=1",)),
)
if "toy" not in RECIPES:  # imported once per process; the guard only covers a re-import under another name
    register_recipe(TOY)


def register_for_ray() -> None:
    """Ray workers cannot import test modules: ship this module's code by value."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


# --- the toy's own contract, without Ray ---------------------------------------------------


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_toy_loss_falls_faster_with_larger_lr(tmp_path):
    losses = {}
    for lr in (0.1, 0.5):
        cfg = validate_config(ToyConfig, {"train": {"lr": lr, "epochs": 3}})
        ctx = LocalContext(tmp_path / str(lr))
        toy_recipe(cfg, ctx)
        losses[lr] = [m["loss"] for m in ctx.history]
    assert losses[0.1][-1] == pytest.approx(0.5 * (4 * 0.9**3) ** 2)
    assert losses[0.5][-1] == pytest.approx(0.5 * (4 * 0.5**3) ** 2)
    assert all(a < b for a, b in zip(losses[0.5], losses[0.1]))


def test_toy_restores_exactly_after_failure(tmp_path):
    base = {"seed": 3, "train": {"lr": 0.3, "epochs": 5, "noise": 0.1}}
    straight = tmp_path / "straight"
    toy_recipe(validate_config(ToyConfig, base), LocalContext(straight))
    failing = {**base, "faults": {"fail_at_epoch": 3, "marker_dir": str(tmp_path)}}
    cfg = validate_config(ToyConfig, failing)
    broken = tmp_path / "broken"
    with pytest.raises(InjectedFailure):
        toy_recipe(cfg, LocalContext(broken))
    toy_recipe(cfg, LocalContext(broken))  # resumes from the epoch-2 checkpoint; fails no more
    assert [m["epoch"] for m in _history(broken)] == [1, 2, 3, 4, 5]
    assert [m["w"] for m in _history(broken)] == [m["w"] for m in _history(straight)]  # exact
    starts = sorted(p.name[:9] for p in broken.glob("start_*.txt"))
    assert starts == ["start_000", "start_002"]
    assert all(math.isfinite(m["loss"]) for m in _history(broken))


def test_toy_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="train.lr"):
        validate_config(ToyConfig, {"train": {"lr": 5.0}})
    with pytest.raises(ConfigError, match="unknown key"):
        validate_config(ToyConfig, {"train": {"learning_rate": 0.1}})
