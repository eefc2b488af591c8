"""Configs are data: YAML files validated into frozen dataclasses at the entry point.

Every config class in the project is declared with :func:`config_dataclass` (a frozen
pydantic dataclass that rejects unknown keys), loaded with :func:`load_config`, and written
next to every run with :func:`dump_config`. Validation errors name the offending key with
its full dotted path, e.g. ``search.arch_lr: Input should be a valid number``.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from mmsearch.io import atomic_write_text

C = TypeVar("C")
# The shipped configs (package data, so an installed package has them too); a source checkout's
# ``configs/`` is a link to this folder.
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"

_STRICT = ConfigDict(extra="forbid", validate_default=True)


def config_dataclass(cls: type[C]) -> type[C]:
    """Declare a config section: frozen, typed, unknown keys rejected."""
    return _pydantic_dataclass(frozen=True, config=_STRICT)(cls)


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the bad key(s)."""


# Keys that would carry secrets: credentials come only from the standard AWS chain, never a config.
_CREDENTIAL_KEY = re.compile(r"access_key|secret|session_token|security_token|password|credential", re.IGNORECASE)
_CHAIN = "credentials come only from the standard AWS chain (AWS_ACCESS_KEY_ID / AWS_PROFILE / instance role)"
# A URI with ``user:secret@`` or credential query keys (what pyarrow's ``from_uri`` would accept).
_CREDENTIAL_URI = re.compile(r"://[^/\s]*@|[?&](access_key|secret_key|session_token)=", re.IGNORECASE)


def _credential_keys(data: Any, prefix: str = "") -> list[str]:
    """Dotted keys of ``data`` (nested mappings) whose names say they hold credentials, or whose
    value is a URI carrying them."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            if _CREDENTIAL_KEY.search(str(key)) or (isinstance(value, str) and _CREDENTIAL_URI.search(value)):
                found.append(path)
            found += _credential_keys(value, f"{path}.")
    return found


def masked_override(override: str) -> str:
    """An override as it may appear in a message: no credential value, no ``user:secret@`` in a URI."""
    key, sep, value = override.partition("=")
    if sep and (_CREDENTIAL_KEY.search(key) or _CREDENTIAL_URI.search(value)):
        return f"{key}=***"
    return override


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config ({origin}):"]
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "<root>"
        msg = item["msg"]
        if item["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            msg = "unknown key"
        lines.append(f"  {key}: {msg} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as a YAML scalar/list ("1e-3", "[1,2]", "true")."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted overrides applied (nested dicts are created)."""
    out = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def config_path(path: str | Path) -> Path:
    """A config file as given (relative to the working directory); a relative ``configs/...`` path
    that is not there is the shipped config of that name (:data:`SHIPPED_CONFIGS`), so
    ``configs/search/vqa.yaml`` works from any directory, in a checkout or an installed package."""
    given = Path(path).expanduser()
    if given.is_absolute() or given.exists() or not given.parts or given.parts[0] != "configs":
        return given
    shipped = SHIPPED_CONFIGS.joinpath(*given.parts[1:])
    return shipped if shipped.exists() else given


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = config_path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_config(
    cls: type[C],
    source: str | Path | dict[str, Any] | None = None,
    overrides: Iterable[str] = (),
) -> C:
    """Build a validated, frozen config of type ``cls`` from a YAML path or dict plus overrides."""
    if source is None:
        data, origin = {}, "defaults"
    elif isinstance(source, dict):
        data, origin = source, "dict"
    else:
        data, origin = read_yaml(source), str(source)
    overrides = list(overrides)
    if overrides:
        data = apply_overrides(data, overrides)
        origin += " + overrides " + " ".join(masked_override(o) for o in overrides)
    return validate_config(cls, data, origin)


def validate_config(cls: type[C], data: dict[str, Any], origin: str = "dict") -> C:
    secrets = _credential_keys(data)
    if secrets:  # before pydantic, whose messages would echo the value
        raise ConfigError(f"invalid config ({origin}): {', '.join(secrets)}: explicit credentials (a credential key, "
                          f"or user:secret@ / secret_key= in a URI) are refused in configs (value not shown); {_CHAIN}")
    booleans = bools_where_numbers(cls, data)
    if booleans:  # pydantic's lax mode would read true as 1 (``train.epochs=true`` -> 1 epoch)
        lines = [f"  {key}: a number is expected, got a boolean ({value!r})" for key, value in booleans]
        raise ConfigError("\n".join([f"invalid config ({origin}):", *lines]))
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None
    except (ValueError, TypeError) as err:  # raised by __post_init__ checks
        raise ConfigError(f"invalid config ({origin}): {err}") from None


def bools_where_numbers(cls: Any, data: Any, prefix: str = "") -> list[tuple[str, bool]]:
    """``(dotted key, value)`` wherever ``data`` holds a boolean and the config field of ``cls``
    takes a number but no boolean (YAML ``true`` in an ``int`` or ``float`` field)."""
    if not (dataclasses.is_dataclass(cls) and isinstance(data, dict)):
        return []
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):
        return []
    found: list[tuple[str, bool]] = []
    for field in dataclasses.fields(cls):
        if field.name in data:
            found += _bools_in(hints.get(field.name, Any), data[field.name], f"{prefix}{field.name}")
    return found


def _type_options(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) is typing.Union or type(tp).__name__ == "UnionType":
        return tuple(o for arg in typing.get_args(tp) for o in _type_options(arg))
    return (tp,)


def _bools_in(tp: Any, value: Any, key: str) -> list[tuple[str, bool]]:
    options = _type_options(tp)
    if isinstance(value, bool):
        numeric = any(o in (int, float) for o in options)
        return [(key, value)] if numeric and not any(o in (bool, Any) for o in options) else []
    if isinstance(value, dict):
        for option in options:
            if dataclasses.is_dataclass(option):
                return bools_where_numbers(option, value, key + ".")
        return []
    if isinstance(value, (list, tuple)):
        for option in options:
            if typing.get_origin(option) in (tuple, list):
                args = [a for a in typing.get_args(option) if a is not Ellipsis]
                if not args:
                    return []
                found: list[tuple[str, bool]] = []
                for i, item in enumerate(value):
                    found += _bools_in(args[min(i, len(args) - 1)], item, f"{key}[{i}]")
                return found
    return []


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain (YAML/JSON-serialisable) dict of a config dataclass."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"{type(cfg).__name__} is not a config dataclass")
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def dump_config(cfg: Any, path: str | Path) -> Path:
    """Write the fully resolved config as YAML, atomically; returns the path."""
    path = Path(path)
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


def replace(cfg: C, **changes: Any) -> C:
    """Like dataclasses.replace, but re-validated."""
    data = config_to_dict(cfg)
    data.update({k: config_to_dict(v) if dataclasses.is_dataclass(v) else v for k, v in changes.items()})
    return validate_config(type(cfg), data, "replace")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def set_dotted(data: Mapping[str, Any], key: str, value: Any, *, where: str = "config",
               error: type[ValueError] = ConfigError) -> dict[str, Any]:
    """A copy of nested ``data`` with the dotted ``key`` (``a.b.c``) set to ``value``, sections
    created as needed; a non-section on the way raises ``error`` naming ``key`` and ``where``."""
    out = dict(data)
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, Mapping):
            raise error(f"{key}: {part!r} is not a section in the {where}")
        node[part] = dict(child)
        node = node[part]
    node[parts[-1]] = value
    return out


__all__ = [
    "SHIPPED_CONFIGS",
    "set_dotted",
    "ConfigError",
    "apply_overrides",
    "bools_where_numbers",
    "config_dataclass",
    "config_path",
    "config_to_dict",
    "dump_config",
    "field_names",
    "load_config",
    "masked_override",
    "parse_override",
    "read_yaml",
    "replace",
    "validate_config",
]

_ = typing  # keep typing importable for config modules using forward refs
