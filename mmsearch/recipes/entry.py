"""A recipe's entry: everything a job needs to run the recipe, declared by the recipe itself.

Each recipe package (``recipes/search/``, ``recipes/fusemix/``, ``recipes/train_derived/``)
registers one :class:`Recipe` in :data:`mmsearch.recipes.registry.RECIPES`: the function
``fn(config, context)``, its config class, the fidelity key (the integer number of epochs, ASHA's
``max_t``), how a precomputed data set is bound into its config and checked on the driver, and the
overrides that shrink it for a smoke test. Orchestration looks the entry up by name and holds no
recipe-specific code; adding a recipe is one package (or one module) that calls
:func:`~mmsearch.recipes.registry.register_recipe`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from mmsearch.config import ConfigError, set_dotted


class DataCheckError(ValueError):
    """The data a job's trials would read is missing or does not fit the config."""


@dataclasses.dataclass(frozen=True)
class SmokeTest:
    """Overrides that shrink a job to about a minute on 2 CPUs, per section (without the prefix)."""

    recipe: tuple[str, ...] = ()
    tune: tuple[str, ...] = ()
    dataset: tuple[str, ...] = ()
    shortlist: tuple[str, ...] = ()

    def overrides(self) -> list[str]:
        return [f"{section}.{text}" for section in ("recipe", "tune", "dataset", "shortlist") for text in getattr(self, section)]


@dataclasses.dataclass(frozen=True)
class DataBinding:
    """Where a recipe's data is named in its config, and the check that opens it the way a trial will.

    ``bind`` writes a precomputed data set's root into the recipe section (a plain mapping: the job
    binds before its one validation of the section);
    ``check`` opens the data of a validated config on the driver and returns a one-line
    description, or raises :class:`DataCheckError` naming the path; ``dataset`` is the job's
    ``dataset:`` section for configs without one (None: the recipe's data location is used as is).
    """

    keys: tuple[str, ...]  # recipe keys naming the data; overriding one means "use that data as is"
    bind: Callable[[Mapping[str, Any], str], dict[str, Any]]
    check: Callable[[Any], str | None]
    dataset: Mapping[str, Any] | None = None


def _bind_nothing(recipe: Mapping[str, Any], root: str) -> dict[str, Any]:
    raise ConfigError(f"this recipe reads no data set (got --data-root {root})")


NO_DATA = DataBinding(keys=(), bind=_bind_nothing, check=lambda cfg: None)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One recipe, as the jobs see it."""

    name: str  # "search"; a Tune trial of it is named "<name>_trial"
    fn: Callable[..., Any]  # fn(config, context): reports metrics with an integer "epoch" per epoch
    config_cls: type  # the @config_dataclass of its config
    epochs_key: str  # the fidelity: dotted key of its integer number of epochs (ASHA's max_t)
    data: DataBinding = NO_DATA
    smoke: Callable[[str | None], SmokeTest] = lambda task: SmokeTest()  # per task, for task-driven recipes
    job_defaults: tuple[str, ...] = ()  # recipe overrides a Tune job applies before the user's
    ray_streams: Callable[[Any], bool] = lambda cfg: False  # trial streams its data through Ray Data


def set_key(data: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of nested ``data`` with the dotted ``key`` set to ``value`` (sections created as needed)."""
    return set_dotted(data, key, value, where="recipe config")


def check_finite(store: Any) -> None:
    """Every float column of every table of ``store`` holds finite values; raises StoreError naming
    the table, column, shard file and row of the first NaN / inf. Reads the whole store once, on
    the driver: the precompute writer refuses non-finite latents, so this catches stores written
    or changed by anything else before every trial fails on them."""
    for name in store.tables:
        store.table(name).check_finite()


__all__ = ["NO_DATA", "DataBinding", "DataCheckError", "Recipe", "SmokeTest", "check_finite", "set_key"]
