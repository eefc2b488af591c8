"""Tune search spaces from config data, checked against the recipe's config class before Ray starts.

A space maps dotted config keys to one distribution each::

    search.arch_lr:  {loguniform: [1.0e-4, 1.0e-1]}
    search.strategy: {choice: [proxyless, darts]}
    model.hidden:    {choice: [64, 128]}
    seed:            {grid: [0, 1, 2]}

Every key must name a field of the recipe's config, and every value the space can produce
(choices, grid points, range ends) must validate in that config, so a typo or an impossible
value fails here with the key named, not inside the first trial. Searchers: ``random``
(Ray's BasicVariantGenerator: random sampling plus grid expansion) and ``optuna`` (TPE,
model-based; it cannot expand grids, so grids are rejected for it).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import typing
from typing import Any, Callable

from ray import tune
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm

from mmsearch.config import ConfigError, validate_config
from mmsearch.config import set_dotted as config_set_dotted
from mmsearch.orchestration.quiet import is_quiet


class SearchSpaceError(ValueError):
    """The search space is invalid; the message names the key."""


def _bounds(n: int, *, log: bool = False, integer: bool = False, q: bool = False) -> Callable[[str, list], None]:
    def check(key: str, args: list) -> None:
        if len(args) != n or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            names = "[low, high, q]" if q else "[low, high]"
            raise SearchSpaceError(f"{key}: expected {names} as numbers, got {args!r}")
        low, high = args[0], args[1]
        if not all(math.isfinite(a) for a in args):
            raise SearchSpaceError(f"{key}: bounds must be finite, got {args!r}")
        if integer and not all(float(a).is_integer() for a in args):
            raise SearchSpaceError(f"{key}: integer distribution needs integer bounds, got {args!r}")
        if not low < high:
            raise SearchSpaceError(f"{key}: low must be < high, got low={low} high={high}")
        if log and low <= 0:
            raise SearchSpaceError(f"{key}: log-scale distribution needs low > 0, got low={low}")
        if q and args[2] <= 0:
            raise SearchSpaceError(f"{key}: quantum q must be > 0, got q={args[2]}")

    return check


def _values(key: str, args: Any) -> None:
    if not isinstance(args, list) or not args:
        raise SearchSpaceError(f"{key}: expected a non-empty list of values, got {args!r}")


@dataclasses.dataclass(frozen=True)
class _Distribution:
    check: Callable[[str, Any], None]
    build: Callable[..., Any]  # tune domain constructor
    corners: Callable[[Any], list]  # values whose validity implies the whole range's (ends, choices)
    spread: bool  # True: the constructor takes *args; False: the list itself


DISTRIBUTIONS: dict[str, _Distribution] = {
    "uniform": _Distribution(_bounds(2), tune.uniform, lambda a: [float(a[0]), float(a[1])], True),
    "quniform": _Distribution(_bounds(3, q=True), tune.quniform, lambda a: [float(a[0]), float(a[1])], True),
    "loguniform": _Distribution(_bounds(2, log=True), tune.loguniform, lambda a: [float(a[0]), float(a[1])], True),
    "qloguniform": _Distribution(
        _bounds(3, log=True, q=True), tune.qloguniform, lambda a: [float(a[0]), float(a[1])], True
    ),
    # randint: high is exclusive, as in Python's range and Ray Tune.
    "randint": _Distribution(_bounds(2, integer=True), tune.randint, lambda a: [int(a[0]), int(a[1]) - 1], True),
    "qrandint": _Distribution(
        _bounds(3, integer=True, q=True), tune.qrandint, lambda a: [int(a[0]), int(a[1])], True
    ),
    "lograndint": _Distribution(
        _bounds(2, log=True, integer=True), tune.lograndint, lambda a: [int(a[0]), int(a[1]) - 1], True
    ),
    "choice": _Distribution(_values, tune.choice, list, False),
    "grid": _Distribution(_values, tune.grid_search, list, False),
}

SEARCHERS = ("random", "optuna")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A validated space: Tune's ``param_space`` plus what the ladder/summary need to know."""

    param_space: dict[str, Any]  # dotted key -> tune domain / grid_search dict
    spec: dict[str, dict[str, Any]]  # the data it was parsed from
    grid_points: int  # trials per sample from grid expansion (1 without grids)

    @property
    def keys(self) -> list[str]:
        return list(self.spec)

    def num_trials(self, num_samples: int) -> int:
        """Trials Tune creates: every grid point is sampled ``num_samples`` times."""
        return num_samples * self.grid_points


def parse_search_space(
    spec: dict[str, Any], config_cls: type, base_config: dict[str, Any] | None = None
) -> SearchSpace:
    """Validate ``spec`` against ``config_cls`` (with ``base_config`` for the other fields)."""
    base_config = base_config or {}
    param_space: dict[str, Any] = {}
    grid_points = 1
    for key, entry in spec.items():
        _check_key_exists(config_cls, key)
        if not isinstance(entry, dict) or len(entry) != 1:
            raise SearchSpaceError(
                f"{key}: expected one distribution like {{loguniform: [1e-4, 1e-1]}}, got {entry!r}"
            )
        (name, args), = entry.items()
        dist = DISTRIBUTIONS.get(name)
        if dist is None:
            raise SearchSpaceError(f"{key}: unknown distribution {name!r}; known: {', '.join(DISTRIBUTIONS)}")
        dist.check(key, args)
        for value in dist.corners(args):
            _check_value_valid(config_cls, base_config, key, value)
        param_space[key] = dist.build(*args) if dist.spread else dist.build(list(args))
        if name == "grid":
            grid_points *= len(args)
    return SearchSpace(param_space=param_space, spec=dict(spec), grid_points=grid_points)


def _check_key_exists(config_cls: type, key: str) -> None:
    node: Any = config_cls
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            raise SearchSpaceError(f"{key}: {'.'.join(parts[:depth])} is not a config section")
        hints = typing.get_type_hints(node)
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names:
            where = ".".join(parts[:depth]) or config_cls.__name__
            raise SearchSpaceError(f"{key}: {where} has no field {part!r}; known: {', '.join(names)}")
        node = _section_type(hints[part])


def _section_type(hint: Any) -> Any:
    """The dataclass inside ``X``, ``X | None`` or ``Optional[X]``, else the hint itself."""
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return hint


def _check_value_valid(config_cls: type, base: dict[str, Any], key: str, value: Any) -> None:
    data = set_dotted(base, key, value)
    try:
        validate_config(config_cls, data, origin=f"search space {key}={value!r}")
    except ConfigError as err:
        raise SearchSpaceError(f"{key}: value {value!r} is not valid for {config_cls.__name__}:\n{err}") from None


def set_dotted(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of nested ``data`` with ``a.b.c`` set to ``value`` (sections created as needed)."""
    return config_set_dotted(data, key, value, where="base config", error=SearchSpaceError)


def build_searcher(
    name: str, space: SearchSpace, *, metric: str, mode: str, max_concurrent: int, seed: int | None
) -> SearchAlgorithm | ConcurrencyLimiter:
    """The search algorithm, with the concurrency limit built in (Tune ignores it otherwise)."""
    if name == "random":
        return BasicVariantGenerator(max_concurrent=max_concurrent, random_state=seed)
    if name == "optuna":
        grids = [k for k, v in space.spec.items() if "grid" in v]
        if grids:
            raise SearchSpaceError(
                f"searcher 'optuna' cannot expand grids ({', '.join(grids)}); use 'choice' instead, "
                "or searcher 'random'"
            )
        from ray.tune.search.optuna import OptunaSearch

        if is_quiet():  # Optuna sets its logger to INFO when imported: no "A new study created in memory" line
            logging.getLogger("optuna").setLevel(logging.WARNING)
        return ConcurrencyLimiter(OptunaSearch(metric=metric, mode=mode, seed=seed), max_concurrent=max_concurrent)
    raise SearchSpaceError(f"unknown searcher {name!r}; known: {', '.join(SEARCHERS)}")


__all__ = [
    "DISTRIBUTIONS",
    "SEARCHERS",
    "SearchSpace",
    "SearchSpaceError",
    "build_searcher",
    "parse_search_space",
    "set_dotted",
]
