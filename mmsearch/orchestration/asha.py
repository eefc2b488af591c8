"""ASHA settings checked before anything starts, and the rung ladder they imply.

The fidelity unit is the recipe's reported ``epoch`` (``time_attr="epoch"``), never Tune's
``training_iteration``, which counts reports and restarts after a restore. Rungs follow Ray's
``AsyncHyperBandScheduler`` exactly (milestones ``grace * rf**k`` below ``max_t``; a trial that
reaches ``max_t`` is stopped as complete). The ladder printout says where trials can be
stopped, how many are expected to reach the top, and the compute that saves over FIFO.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from mmsearch.orchestration.settings import SchedulerSettings
from mmsearch.recipes.context import EPOCH_KEY

log = logging.getLogger(__name__)

TIME_ATTR = EPOCH_KEY  # the recipe's reported epoch: the fidelity unit of every rung


class SchedulerConfigError(ValueError):
    """Scheduler settings that cannot work; the message names the setting."""


def ray_milestones(grace_period: float, max_t: float, reduction_factor: float, bracket: int = 0) -> list[float]:
    """Rung milestones of one ASHA bracket, ascending, computed exactly as Ray's ``_Bracket`` does."""
    num_rungs = int(np.log(max_t / grace_period) / np.log(reduction_factor) - bracket + 1)
    return [grace_period * reduction_factor ** (k + bracket) for k in range(num_rungs)]


@dataclasses.dataclass(frozen=True)
class RungLadder:
    """Where ASHA can stop a trial (``rungs``, in epochs) below the full budget ``max_t``."""

    rungs: tuple[float, ...]
    max_t: int
    reduction_factor: float

    def expected_alive(self, num_trials: int) -> list[tuple[float, float]]:
        """(epoch, expected number of trials that get there): ~1/rf survive each rung."""
        alive = [(self.rungs[0] if self.rungs else self.max_t, float(num_trials))]
        for i, _ in enumerate(self.rungs):
            target = self.rungs[i + 1] if i + 1 < len(self.rungs) else self.max_t
            alive.append((target, num_trials / self.reduction_factor ** (i + 1)))
        return alive

    def expected_epochs(self, num_trials: int) -> float:
        """Expected total trial-epochs under ASHA (FIFO would spend ``num_trials * max_t``)."""
        total, previous = 0.0, 0.0
        alive = self.expected_alive(num_trials)
        for (epoch, count) in alive:
            total += count * (epoch - previous)
            previous = epoch
        return total

    def describe(self, num_trials: int) -> str:
        lines = [f"ASHA rung ladder (fidelity unit: epoch; {num_trials} trials; reduction factor {self.reduction_factor:g})"]
        for epoch, count in self.expected_alive(num_trials):
            label = "top rung (max_t)" if epoch == self.max_t else "rung"
            lines.append(f"  epoch {epoch:>6g}  {label:<16} ~{count:.1f} trials expected to get here")
        top = self.expected_alive(num_trials)[-1][1]
        asha, fifo = self.expected_epochs(num_trials), float(num_trials * self.max_t)
        lines.append(
            f"  ~{max(1.0, top):.1f} of {num_trials} trials expected to reach the top rung "
            "(asynchronous ASHA promotes early arrivals without comparison, so usually a few more)"
        )
        lines.append(f"  expected compute ~{asha:.0f} trial-epochs vs {fifo:.0f} for FIFO ({fifo / max(asha, 1e-9):.1f}x less)")
        return "\n".join(lines)


def validate_scheduler(
    settings: SchedulerSettings, *, recipe_epochs: int, metric: str | None, mode: str | None
) -> RungLadder | None:
    """Check the settings against the recipe; returns the ladder (None for FIFO)."""
    if not metric:
        raise SchedulerConfigError("tune.metric must name the reported metric the scheduler compares")
    if mode not in ("min", "max"):
        raise SchedulerConfigError(f"tune.mode must be 'min' or 'max' (got {mode!r})")
    if recipe_epochs < 1:
        raise SchedulerConfigError(f"the recipe runs {recipe_epochs} epochs; it must run at least 1")
    if settings.name == "fifo":
        return None
    if settings.grace_period < 1:
        raise SchedulerConfigError(f"scheduler.grace_period must be >= 1 epoch (got {settings.grace_period})")
    if settings.reduction_factor < 2:
        raise SchedulerConfigError(f"scheduler.reduction_factor must be >= 2 (got {settings.reduction_factor:g})")
    max_t = settings.max_t if settings.max_t is not None else recipe_epochs
    if max_t != recipe_epochs:
        raise SchedulerConfigError(
            f"scheduler.max_t={max_t} does not match the recipe's {recipe_epochs} epochs: trials would "
            + ("end before the top rung" if max_t > recipe_epochs else "be cut before they finish")
            + "; leave max_t unset to use the recipe's epochs"
        )
    if max_t < settings.grace_period:
        raise SchedulerConfigError(f"scheduler.max_t={max_t} is below scheduler.grace_period={settings.grace_period}")
    milestones = ray_milestones(settings.grace_period, max_t, settings.reduction_factor)
    if settings.brackets < 1 or settings.brackets > len(milestones):
        raise SchedulerConfigError(
            f"scheduler.brackets must be between 1 and {len(milestones)} for this ladder (got {settings.brackets})"
        )
    ladder = RungLadder(
        rungs=tuple(m for m in milestones if m < max_t), max_t=max_t, reduction_factor=settings.reduction_factor
    )
    if not ladder.rungs:
        log.warning(
            "ASHA has no rung below max_t=%s (grace_period=%s): it will stop no trial early; lower grace_period",
            max_t,
            settings.grace_period,
        )
    return ladder


__all__ = ["TIME_ATTR", "RungLadder", "SchedulerConfigError", "ray_milestones", "validate_scheduler"]
