"""Use trained FuseMix adapters: export them, load them, embed latents, images and texts.

An export is a directory:

  * ``fusemix.json`` -- format and version, and per side (``x``, ``y``) the latent column name,
    latent dimension, frozen encoder name (``mmsearch.encoders.ENCODERS``) and modality; the
    adapter shapes, shared dimension, temperature, plus free metadata (metrics, resolved config);
  * ``adapters.safetensors`` -- the weights (no pickle), loaded strictly (every key must match).

Python::

    emb = FuseMixEmbedder.load("runs/fusemix/export")
    z_img = emb.embed_x(image_latents)          # [n, 512], L2-normalised
    z_txt = emb.embed_texts(["a red circle"])  # through the frozen text encoder, then the adapter
    scores = z_img @ z_txt.T                    # cosine similarities

Command line (``mmsearch embed ...`` dispatches to :func:`main`)::

    mmsearch embed EXPORT --texts captions.txt --out text_emb.npy
    mmsearch embed EXPORT --images a.png b.jpg --out image_emb.parquet
    mmsearch embed EXPORT --latents latents.npy --side x --out z.npy
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from mmsearch.adapters.mlp import AdapterConfig
from mmsearch.cli_parsers import embed_parser
from mmsearch.adapters.model import FuseMixModel
from mmsearch.io import atomic_directory, atomic_write_bytes

EXPORT_FORMAT = "mmsearch.fusemix_adapters"
EXPORT_VERSION = 1
MANIFEST_NAME = "fusemix.json"
WEIGHTS_NAME = "adapters.safetensors"

Side = Literal["x", "y"]


class ExportError(ValueError):
    """An export directory is missing, incomplete, or does not match its weights."""


@dataclass(frozen=True)
class SideSpec:
    """What feeds one side of the adapters."""

    column: str  # latent column name in the store (e.g. "image")
    dim: int  # latent dimension
    encoder: str | None = None  # ENCODERS name that turns raw inputs into these latents
    modality: str | None = None  # "image", "text", "audio", ...; None = same as ``column``

    @property
    def kind(self) -> str:
        return self.modality or self.column


def _adapter_shape(adapter: torch.nn.Module) -> dict[str, Any]:
    blocks = list(adapter.blocks)
    hidden = blocks[0].fc1.out_features if blocks else 4 * adapter.in_dim
    dropout = float(blocks[0].drop.p) if blocks else 0.0
    return {"depth": len(blocks), "width_factor": hidden / adapter.in_dim, "dropout": dropout}


def export_adapters(
    model: FuseMixModel,
    path: str | Path,
    *,
    x: SideSpec,
    y: SideSpec,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (adapters + temperature) as an export directory, atomically."""
    from safetensors.torch import save_file

    if (x.dim, y.dim) != (model.x_dim, model.y_dim):
        raise ExportError(f"side dims ({x.dim}, {y.dim}) do not match the adapters ({model.x_dim}, {model.y_dim})")
    manifest = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "x": asdict(x),
        "y": asdict(y),
        "out_dim": model.out_dim,
        "adapters": {"x": _adapter_shape(model.x_adapter), "y": _adapter_shape(model.y_adapter)},
        "temperature": float(model.temperature.detach()),
        "temperature_bounds": list(model.temperature_bounds),
        "metadata": metadata or {},
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_directory(path) as scratch:
        save_file(state, str(scratch / WEIGHTS_NAME))
        (scratch / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ExportError(f"{path} is not a FuseMix export (no {MANIFEST_NAME})")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{manifest_path}: format is {manifest.get('format')!r}, expected {EXPORT_FORMAT!r}")
    if manifest.get("version") != EXPORT_VERSION:
        raise ExportError(f"{manifest_path}: version {manifest.get('version')} is not supported (expected {EXPORT_VERSION})")
    return manifest


class FuseMixEmbedder:
    """Embeds latents (or raw inputs, through the frozen encoders) into the shared space."""

    def __init__(self, model: FuseMixModel, x: SideSpec, y: SideSpec, *, device: str | torch.device = "cpu",
                 metadata: dict[str, Any] | None = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.sides: dict[str, SideSpec] = {"x": x, "y": y}
        self.metadata = metadata or {}
        self._encoders: dict[str, Any] = {}

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "FuseMixEmbedder":
        from safetensors.torch import load_file

        path = Path(path)
        manifest = read_manifest(path)
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise ExportError(f"{path}: missing weights file {WEIGHTS_NAME}")
        x, y = SideSpec(**manifest["x"]), SideSpec(**manifest["y"])
        low, high = (float(v) for v in manifest["temperature_bounds"])
        model = FuseMixModel(
            x.dim,
            y.dim,
            out_dim=int(manifest["out_dim"]),
            x_adapter=AdapterConfig(**manifest["adapters"]["x"]),
            y_adapter=AdapterConfig(**manifest["adapters"]["y"]),
            temperature_init=min(max(float(manifest["temperature"]), low), high),  # the weights set the real value
            temperature_bounds=(low, high),
        )
        try:
            model.load_state_dict(load_file(str(weights)), strict=True)
        except RuntimeError as exc:
            raise ExportError(f"{weights} does not match {MANIFEST_NAME}: {exc}") from exc
        return cls(model, x, y, device=device, metadata=manifest.get("metadata"))

    @property
    def out_dim(self) -> int:
        return self.model.out_dim

    def side_for(self, modality: str) -> Side:
        """The side (``"x"`` or ``"y"``) fed by ``modality`` (e.g. "image")."""
        matches = [side for side, spec in self.sides.items() if spec.kind == modality]
        if len(matches) != 1:
            kinds = {side: spec.kind for side, spec in self.sides.items()}
            raise ExportError(f"this export has no unique {modality!r} side; sides: {kinds}")
        return matches[0]  # type: ignore[return-value]

    @torch.no_grad()
    def embed_latents(self, side: Side, latents: Tensor | np.ndarray, *, batch_size: int = 4096) -> Tensor:
        """L2-normalised ``[n, out_dim]`` float32 embeddings (on CPU) of ``[n, dim]`` latents."""
        spec = self.sides[side]
        values = torch.as_tensor(np.asarray(latents) if not isinstance(latents, Tensor) else latents)
        if values.ndim == 1:
            values = values[None, :]
        if values.ndim != 2 or values.shape[1] != spec.dim:
            raise ValueError(f"{side} side ({spec.column!r}) takes latents of shape [n, {spec.dim}], got {tuple(values.shape)}")
        if not values.dtype.is_floating_point or not bool(torch.isfinite(values).all()):
            raise ValueError(f"{side} side ({spec.column!r}) latents must be finite floats")
        embed = self.model.embed_x if side == "x" else self.model.embed_y
        out = [embed(values[s : s + batch_size].to(self.device, torch.float32)).cpu()
               for s in range(0, len(values), batch_size)]
        return torch.cat(out) if out else torch.empty(0, self.out_dim)

    def embed_x(self, latents: Tensor | np.ndarray, *, batch_size: int = 4096) -> Tensor:
        return self.embed_latents("x", latents, batch_size=batch_size)

    def embed_y(self, latents: Tensor | np.ndarray, *, batch_size: int = 4096) -> Tensor:
        return self.embed_latents("y", latents, batch_size=batch_size)

    def encoder(self, side: Side) -> Any:
        """The frozen encoder recorded for ``side``, built once (lazily imports mmsearch.encoders)."""
        if side not in self._encoders:
            spec = self.sides[side]
            if not spec.encoder:
                raise ExportError(f"the export records no encoder for side {side} ({spec.column!r}); embed latents instead")
            from mmsearch.encoders import ENCODERS

            encoder = ENCODERS.get(spec.encoder)(device=self.device)
            info = getattr(encoder, "info", None)
            if info is not None and int(info.dim) != spec.dim:
                raise ExportError(f"encoder {spec.encoder!r} gives {info.dim}-d latents but side {side} expects {spec.dim}")
            if info is not None and spec.modality is not None and info.modality != spec.modality:
                raise ExportError(f"encoder {spec.encoder!r} takes {info.modality} inputs but side {side} is {spec.modality!r}")
            self._encoders[side] = encoder
        return self._encoders[side]

    @torch.no_grad()
    def embed_inputs(self, side: Side, inputs: Sequence[Any], *, batch_size: int = 64) -> Tensor:
        """Raw inputs (images, texts, ...) -> frozen encoder latents -> shared space."""
        encoder = self.encoder(side)
        chunks = []
        for start in range(0, len(inputs), batch_size):
            latents = encoder.embed(list(inputs[start : start + batch_size]))
            chunks.append(self.embed_latents(side, torch.as_tensor(latents).float().cpu()))
        return torch.cat(chunks) if chunks else torch.empty(0, self.out_dim)

    def embed_images(self, images: Sequence[Any], *, batch_size: int = 64) -> Tensor:
        """PIL images -> shared space (the side whose modality is "image")."""
        return self.embed_inputs(self.side_for("image"), images, batch_size=batch_size)

    def embed_texts(self, texts: Sequence[str], *, batch_size: int = 256) -> Tensor:
        """Strings -> shared space (the side whose modality is "text")."""
        return self.embed_inputs(self.side_for("text"), list(texts), batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# Command line


def _write_output(path: Path, embeddings: Tensor, labels: tuple[str, list[Any]]) -> None:
    array = embeddings.numpy().astype(np.float32, copy=False)
    if path.suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, array)
        atomic_write_bytes(path, buf.getvalue())
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        name, values = labels
        flat = pa.array(array.reshape(-1))
        table = pa.table({name: values, "embedding": pa.FixedSizeListArray.from_arrays(flat, array.shape[1])})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())
    else:
        raise ValueError(f"--out must end in .npy or .parquet, got {path.name!r}")


def _read_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_images(paths: Sequence[str]) -> list[Any]:
    from PIL import Image

    images = []
    for name in paths:
        if not Path(name).is_file():
            raise FileNotFoundError(f"image not found: {name}")
        with Image.open(name) as image:
            images.append(image.convert("RGB"))
    return images


def build_parser() -> argparse.ArgumentParser:
    return embed_parser()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.latents is not None and args.side is None:
        parser.error("--latents needs --side x or --side y")
    if args.out.suffix not in (".npy", ".parquet"):
        parser.error(f"--out must end in .npy or .parquet, got {args.out.name!r}")
    try:
        embedder = FuseMixEmbedder.load(args.export, device=args.device)
        if args.texts is not None:
            texts = _read_texts(args.texts)
            embeddings, labels = embedder.embed_texts(texts, batch_size=args.batch_size), ("text", texts)
        elif args.images is not None:
            images = _read_images(args.images)
            embeddings, labels = embedder.embed_images(images, batch_size=args.batch_size), ("path", list(args.images))
        else:
            if not args.latents.is_file():
                raise FileNotFoundError(f"latents file not found: {args.latents}")
            latents = np.load(args.latents, allow_pickle=False)
            embeddings = embedder.embed_latents(args.side, latents, batch_size=args.batch_size)
            labels = ("row", list(range(len(embeddings))))
        _write_output(args.out, embeddings, labels)
    except (ValueError, FileNotFoundError, OSError, KeyError) as exc:
        print(f"mmsearch embed: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(embeddings)} embeddings of dimension {embeddings.shape[1]} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
