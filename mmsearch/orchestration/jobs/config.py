"""A job's config: the recipe's config, the ``tune`` settings and the data set, from YAML + command line.

A job config file has up to three sections::

    recipe:  {...}    # the recipe's own config (SearchConfig, FuseMixConfig, ...)
    tune:    {...}    # mmsearch.orchestration.settings.TuneSettings
    dataset: {...}    # a PrecomputeConfig (partial): the data set the trials read, built on first
                      # use and reused afterwards; null = the recipe's own data location, as is
    shortlist: {...}  # search jobs: mmsearch.evaluation.ShortlistSettings (retrain the top-k + anchors)

A file without a ``recipe:`` section is a plain recipe config (``configs/fusemix/scenes.yaml``);
its tune settings then come from ``--tune FILE`` (or the job's default tune file) and its data
set from the job's default.

Command-line overrides are dotted and start with the section: ``recipe.search.epochs=4``,
``tune.num_samples=8``, ``dataset.source.scenes.num_scenes=500``. They apply in this order: the
file, the job's smoke-test overrides (``--smoke-test``), the user's overrides, then ``--name``,
``--storage`` and ``--data-root``. Naming the recipe's data location (``--data-root`` or an
override of a data key such as ``recipe.data.root``) means "use that data as it is": nothing is
built and a missing data set is an error before any trial starts.

This is the job's edge: the recipe section, with its data bound (the data set's place, or
``--data-root``), is validated here once into the recipe's frozen config, and everything
downstream (the plan, the experiment, the trials, ``--then-train``, the shortlist) receives that
object, not the dict.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from mmsearch.config import ConfigError, apply_overrides, config_path, masked_override, parse_override, read_yaml, validate_config
from mmsearch.data.precompute.config import PrecomputeConfig
from mmsearch.evaluation import ShortlistSettings
from mmsearch.orchestration.settings import TuneSettings
from mmsearch.orchestration.jobs.data import bind_data, dataset_uri, place_dataset
from mmsearch.recipes.entry import NO_DATA, DataBinding, SmokeTest

SECTIONS = ("recipe", "tune", "dataset", "shortlist")
SMOKE_SUFFIX = "-smoke"


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """What the command line asks for (see ``mmsearch.orchestration.jobs.build_parser``)."""

    config: str | None = None  # YAML path; None = the job's shipped config
    overrides: tuple[str, ...] = ()
    name: str | None = None  # experiment name (tune.experiment_name)
    storage: str | None = None  # tune.storage_path: a local/NFS path or s3://bucket/prefix
    smoke_test: bool = False
    then_train: bool = False
    data_root: str | None = None  # an existing precomputed data set; nothing is built
    tune_file: str | None = None  # tune settings for a plain recipe config
    train_config: str | None = None  # --then-train: the derived-training config
    check_only: bool = False  # validate everything, run no trial
    cpu: bool = False  # --cpu: trials get no GPU even where the cluster has some


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """A job's validated settings. ``recipe`` is the recipe's frozen config, its data bound."""

    recipe: Any  # an instance of the recipe's config class
    tune: TuneSettings
    dataset: PrecomputeConfig | None  # placed (its output settled); None: the recipe's own data location is used as it is
    origin: str  # where it came from, for messages
    shortlist: ShortlistSettings = ShortlistSettings()  # off unless the file or an override turns it on

    @property
    def builds_data(self) -> bool:
        return self.dataset is not None


def split_job_file(raw: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """The sections of a job file; a file without ``recipe:`` is a plain recipe config."""
    if "recipe" not in raw:
        return {"recipe": dict(raw)}
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{origin}: unknown top-level section(s) {unknown}; a job config has {list(SECTIONS)}")
    if not isinstance(raw["recipe"], Mapping):
        raise ConfigError(f"{origin}: the recipe section must be a mapping")
    return {key: raw[key] for key in SECTIONS if key in raw}


def route_overrides(overrides: Iterable[str]) -> dict[str, list[str]]:
    """Overrides per section, the section prefix removed; ``dataset=null`` is kept whole."""
    routed: dict[str, list[str]] = {section: [] for section in SECTIONS}
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] not in SECTIONS:
            hint = f"; did you mean recipe.{text}?" if "=" in text else ""
            raise ConfigError(f"override {text!r} must start with one of {', '.join(s + '.' for s in SECTIONS)}{hint}")
        routed[path[0]].append(text)
    return routed


def _apply(section: str, data: Any, overrides: list[str]) -> Any:
    """Apply ``section.``-prefixed overrides to one section's data (which may be None)."""
    if not overrides:
        return data
    wrapped = apply_overrides({section: {} if data is None else data}, overrides)
    return wrapped[section]


def overrides_touch(overrides: Iterable[str], keys: Iterable[str]) -> bool:
    """Whether any override sets one of the dotted ``keys`` (or a section holding one)."""
    wanted = [key.split(".") for key in keys]
    for text in overrides:
        path, _ = parse_override(text)
        if any(path[: len(key)] == key or key[: len(path)] == path for key in wanted):
            return True
    return False


def load_job_config(
    options: JobOptions,
    *,
    config_cls: type,
    default_config: str,
    default_tune: str | None = None,
    default_dataset: Mapping[str, Any] | None = None,
    smoke_test: SmokeTest = SmokeTest(),
    data: DataBinding = NO_DATA,
) -> JobConfig:
    """Read, override and validate a job's config; raises ConfigError naming the bad key or value.

    ``data`` is the recipe's data binding: overriding one of its keys (``recipe.data.root``) or
    ``--data-root`` turns data building off; otherwise the data set is placed
    (:func:`~mmsearch.orchestration.jobs.data.place_dataset`) and its root bound into the recipe
    section before the one validation of it.
    """
    path = config_path(options.config or default_config)
    origin = str(path)
    sections = split_job_file(read_yaml(path), origin)
    tune_file = options.tune_file or (default_tune if "tune" not in sections else None)
    if tune_file is not None:
        tune_path = config_path(tune_file)
        sections["tune"] = read_yaml(tune_path)
        origin += f" + tune {tune_path}"
    if "tune" not in sections or sections["tune"] is None:
        raise ConfigError(f"{origin}: no tune settings; add a 'tune:' section or pass --tune FILE")
    if "dataset" not in sections:
        sections["dataset"] = dict(default_dataset) if default_dataset is not None else None

    user = list(options.overrides)
    overrides = smoke_test.overrides() if options.smoke_test else []
    if options.smoke_test and not options.name and not overrides_touch(user, ["tune.experiment_name"]):
        base_name = (sections["tune"] or {}).get("experiment_name")
        if isinstance(base_name, str) and not base_name.endswith(SMOKE_SUFFIX):
            overrides.append(f"tune.experiment_name={base_name}{SMOKE_SUFFIX}")  # never resumes the real experiment
    overrides += user
    if options.name is not None:
        overrides.append(f"tune.experiment_name={options.name}")
    if options.storage is not None:
        overrides.append(f"tune.storage_path={options.storage}")
    routed = route_overrides(overrides)
    explicit_data = options.data_root is not None or overrides_touch(routed["recipe"], [f"recipe.{k}" for k in data.keys])
    if overrides:
        origin += " + overrides " + " ".join(masked_override(o) for o in user)

    recipe = _apply("recipe", sections["recipe"], routed["recipe"])
    tune_data = _apply("tune", sections["tune"], routed["tune"])
    dataset_data = None if explicit_data else _apply("dataset", sections["dataset"], routed["dataset"])
    tune = validate_config(TuneSettings, tune_data, origin=f"{origin} [tune]")
    dataset = None if dataset_data is None else validate_config(PrecomputeConfig, dataset_data, origin=f"{origin} [dataset]")
    shortlist = validate_config(ShortlistSettings, _apply("shortlist", sections.get("shortlist") or {}, routed["shortlist"]) or {},
                                origin=f"{origin} [shortlist]")
    if dataset is not None:
        from mmsearch.storage import resolve_storage

        dataset = place_dataset(dataset, resolve_storage(tune.storage_path, tune.s3_endpoint_url))
        recipe = data.bind(recipe, dataset_uri(dataset))
    else:
        recipe = bind_data(data, recipe, options.data_root)
    cfg = validate_config(config_cls, recipe, origin=f"{origin} [recipe]")  # the one validation: names a bad key or an unknown op
    return JobConfig(recipe=cfg, tune=tune, dataset=dataset, origin=origin, shortlist=shortlist)


__all__ = [
    "SECTIONS",
    "SMOKE_SUFFIX",
    "JobConfig",
    "JobOptions",
    "load_job_config",
    "overrides_touch",
    "route_overrides",
    "split_job_file",
]
