"""Small helpers shared by the real-format loaders: typed field access with clear errors, paths."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from mmsearch.data.records import ImageRecord


class RecordError(ValueError):
    """A record in a data file is malformed; the message names the file, the record and the field."""


def field(entry: Any, name: str, kinds: type | tuple[type, ...], where: str) -> Any:
    """``entry[name]`` checked to be one of ``kinds`` (bool never counts as a number)."""
    if not isinstance(entry, Mapping):
        raise RecordError(f"{where}: expected an object, got {type(entry).__name__}")
    if name not in entry:
        raise RecordError(f"{where}: missing field {name!r}")
    value = entry[name]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise RecordError(f"{where}: field {name!r} must be {_names(kinds)}, got a bool")
    if not isinstance(value, kinds):
        raise RecordError(f"{where}: field {name!r} must be {_names(kinds)}, got {type(value).__name__}")
    return value


def _names(kinds: type | tuple[type, ...]) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(k.__name__ for k in kinds)


def format_path(root: str | Path, pattern: str, **values: Any) -> Path:
    """``root / pattern.format(**values)``; a pattern naming an unknown field fails clearly."""
    try:
        relative = pattern.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"path pattern {pattern!r} is invalid ({exc}); fields available: {sorted(values)}") from None
    if not relative or Path(relative).is_absolute():
        raise ValueError(f"path pattern {pattern!r} gave {relative!r}, not a path relative to {root} (values {values})")
    return Path(root) / relative


def image_record(
    image_id: str,
    *,
    region_file: Path | None,
    path: Path | None,
    height: int | None = None,
    width: int | None = None,
    resolve_sizes: bool = True,
) -> ImageRecord:
    """An ``ImageRecord``; sizes come from the caller, else from the region file or image header.

    With ``resolve_sizes`` the file is opened (which also proves it exists); without it, unknown
    sizes are 0 and files are only checked when features are read.
    """
    if region_file is None and path is None:
        raise ValueError("give a feature root (region .npz files) or an image root (raw images)")
    if height is None or width is None:
        height = width = 0
        if resolve_sizes:
            height, width = _read_size(region_file, path)
    return ImageRecord(
        image_id=image_id,
        height=int(height),
        width=int(width),
        path=str(path) if path is not None else None,
        region_file=str(region_file) if region_file is not None else None,
    )


def _read_size(region_file: Path | None, path: Path | None) -> tuple[int, int]:
    if region_file is not None:
        from mmsearch.data.loaders.bua import read_bua_image_size

        return read_bua_image_size(region_file)
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    with Image.open(path) as image:  # reads the header only
        return image.height, image.width
