"""Architecture specs: which op each encoder and decoder block runs, as JSON.

The file shape is MMnas's ``arch/*.json`` genotype, ``{"enc": [["self_att"], ...], "dec": [[...], ...]}``,
one single-op list per block, plus optional keys this project adds: ``probs`` (per chain, per
block, per candidate), ``entropy`` (written with ``probs``, derived from them: :func:`block_entropy`),
``op_pools``, ``seed``, ``config``, ``epoch``, ``task``, ``source``.
MMnas's published files wrap the genotype in ``{"epochN": {...}}``; :func:`load_arch_spec`
reads them as they are and picks the requested or the latest epoch.

Op names are canonicalised on construction (``self_att_64`` -> ``self_att``); unknown names
fail with the list of known ops. Encoder blocks run on text alone, so they may not use ops that
need the other stream (guided attention) or box geometry (relation self-attention).
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmsearch.io import atomic_write_json
from mmsearch.ops import OPS

CHAINS = ("enc", "dec")
SPECS_DIR = Path(__file__).resolve().parent / "specs"
_EPOCH_KEY = re.compile(r"^epoch(\d+)$")


def block_entropy(probs: Mapping[str, Sequence[Sequence[float]]]) -> dict[str, Any]:
    """How sure a search is, per block: the entropy (nats) of each block's op probabilities, per
    chain (``enc``, ``dec``), the chain means (``enc_mean``, ``dec_mean``), each block's entropy over
    log(K) (``normalized``: 1.0 = uniform over the K candidates, 0.0 = certain) and their mean
    (``normalized_mean``)."""
    out: dict[str, Any] = {}
    normalized: list[float] = []
    for chain in CHAINS:
        rows = [[float(p) for p in row] for row in probs.get(chain, [])]
        out[chain] = [-sum(p * math.log(p) for p in row if p > 0) for row in rows]
        out[f"{chain}_mean"] = sum(out[chain]) / len(rows) if rows else 0.0
        normalized += [e / math.log(len(row)) if len(row) > 1 else 0.0 for e, row in zip(out[chain], rows)]
    out["normalized"] = normalized
    out["normalized_mean"] = sum(normalized) / len(normalized) if normalized else 0.0
    return out


#: Default candidate pools (MMnas's ``enc_safe`` / ``dec_safe``).
DEFAULT_POOLS: dict[str, tuple[str, ...]] = {
    "enc": ("self_att", "feed_forward"),
    "dec": ("self_att", "rel_self_att", "guided_att", "feed_forward"),
}

#: MMnas's op names for export to its training scripts.
MMNAS_NAMES = {
    "self_att": "self_att_64",
    "guided_att": "guided_att_64",
    "rel_self_att": "rel_self_att_64",
    "feed_forward": "feed_forward",
}

_NAMED = {
    "mmnas_vqa": ("mmnas_vqa.json", "vqa"),
    "mmnas_vg": ("mmnas_vgd.json", "vg"),
    "mmnas_vgd": ("mmnas_vgd.json", "vg"),
    "mmnas_itm": ("mmnas_itm.json", "itm"),
    "mcan": ("mcan.json", None),
}
_MMNAS_SOURCE = "MILVLG/mmnas@552e29e arch/{file}"


def encoder_allows(op_name: str) -> bool:
    """Encoder blocks see only the text stream: no guided attention, no box geometry."""
    op = OPS.get(op_name)
    return not (getattr(op, "uses_memory", False) or getattr(op, "uses_relation", False))


def decoder_allows(op_name: str) -> bool:
    """Decoder blocks run on the regions: no op whose queries are text or that needs the joint stream."""
    op = OPS.get(op_name)
    return getattr(op, "query_stream", "image") == "image" and not getattr(op, "joint_only", False)


def canonical_pool(chain: str, ops: Sequence[str]) -> tuple[str, ...]:
    """Canonical, duplicate-free candidate pool for ``chain`` ("enc" or "dec"); validated."""
    if chain not in CHAINS:
        raise ValueError(f"chain must be one of {CHAINS}, got {chain!r}")
    names = tuple(OPS.canonical(n) for n in ops)
    if not names:
        raise ValueError(f"the {chain} op pool is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"the {chain} op pool lists an op twice: {list(names)}")
    if chain == "enc":
        bad = [n for n in names if not encoder_allows(n)]
        if bad:
            raise ValueError(f"encoder blocks cannot use {bad} (they need the image stream or box geometry)")
    if chain == "dec":
        bad = [n for n in names if not decoder_allows(n)]
        if bad:
            raise ValueError(f"decoder blocks cannot use {bad} (text-stream or joint-stream ops; see fusion specs)")
    return names


@dataclass(frozen=True)
class ArchSpec:
    """One op name per encoder block (text) and per decoder block (image regions)."""

    enc: tuple[str, ...]
    dec: tuple[str, ...]
    probs: Mapping[str, tuple[tuple[float, ...], ...]] | None = None
    op_pools: Mapping[str, tuple[str, ...]] | None = None
    seed: int | None = None
    config: Mapping[str, Any] | None = None
    epoch: int | None = None
    task: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.enc, str) or isinstance(self.dec, str):
            raise TypeError("enc and dec must be sequences of op names, not a single string")
        enc = tuple(OPS.canonical(n) for n in self.enc)
        dec = tuple(OPS.canonical(n) for n in self.dec)
        bad = [n for n in enc if not encoder_allows(n)]
        if bad:
            raise ValueError(f"encoder blocks cannot use {sorted(set(bad))} (they need the image stream or box geometry)")
        bad = [n for n in dec if not decoder_allows(n)]
        if bad:
            raise ValueError(f"decoder blocks cannot use {sorted(set(bad))} (text-stream or joint-stream ops; see fusion specs)")
        object.__setattr__(self, "enc", enc)
        object.__setattr__(self, "dec", dec)
        depth = {"enc": len(enc), "dec": len(dec)}
        if self.op_pools is not None:
            pools = {c: canonical_pool(c, self.op_pools[c]) for c in CHAINS}
            for chain, ops in (("enc", enc), ("dec", dec)):
                outside = sorted(set(ops) - set(pools[chain]))
                if outside:
                    raise ValueError(f"{chain} blocks use {outside}, which are not in the {chain} op pool {list(pools[chain])}")
            object.__setattr__(self, "op_pools", pools)
        if self.probs is not None:
            probs = {c: tuple(tuple(float(p) for p in row) for row in self.probs[c]) for c in CHAINS}
            for chain in CHAINS:
                if len(probs[chain]) != depth[chain]:
                    raise ValueError(f"probs[{chain!r}] has {len(probs[chain])} blocks, the spec has {depth[chain]}")
                if self.op_pools is not None:
                    k = len(self.op_pools[chain])
                    if any(len(row) != k for row in probs[chain]):
                        raise ValueError(f"probs[{chain!r}] rows must have one entry per pool op ({k})")
            object.__setattr__(self, "probs", probs)

    @property
    def depths(self) -> tuple[int, int]:
        return len(self.enc), len(self.dec)

    def uses(self, op_name: str) -> bool:
        name = OPS.canonical(op_name)
        return name in self.enc or name in self.dec

    def op_counts(self) -> dict[str, dict[str, int]]:
        """``{"enc": {"self_att": 5, ...}, "dec": {...}}`` (ops absent from a chain are omitted)."""
        out: dict[str, dict[str, int]] = {}
        for chain, ops in (("enc", self.enc), ("dec", self.dec)):
            counts: dict[str, int] = {}
            for name in ops:
                counts[name] = counts.get(name, 0) + 1
            out[chain] = counts
        return out

    def same_architecture(self, other: "ArchSpec") -> bool:
        """True when both specs run the same ops in the same blocks (metadata ignored)."""
        return self.enc == other.enc and self.dec == other.dec

    def replace(self, **changes: Any) -> "ArchSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self, mmnas_names: bool = False) -> dict[str, Any]:
        """The JSON object: MMnas's genotype keys first, then the extra keys that are set."""
        rename = (lambda n: MMNAS_NAMES.get(n, n)) if mmnas_names else (lambda n: n)
        out: dict[str, Any] = {
            "enc": [[rename(n)] for n in self.enc],
            "dec": [[rename(n)] for n in self.dec],
        }
        if self.probs is not None:
            out["probs"] = {c: [list(row) for row in self.probs[c]] for c in CHAINS}
            out["entropy"] = block_entropy(out["probs"])
        if self.op_pools is not None:
            out["op_pools"] = {c: [rename(n) for n in self.op_pools[c]] for c in CHAINS}
        for key in ("seed", "config", "epoch", "task", "source"):
            value = getattr(self, key)
            if value is not None:
                out[key] = dict(value) if key == "config" else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **defaults: Any) -> "ArchSpec":
        """Parse a genotype dict (ours or MMnas's); ``defaults`` fill metadata the dict lacks."""
        if not isinstance(data, Mapping) or "enc" not in data or "dec" not in data:
            raise ValueError("an architecture needs 'enc' and 'dec' lists of blocks")
        known = {"enc", "dec", "probs", "entropy", "op_pools", "seed", "config", "epoch", "task", "source"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown architecture keys {unknown}; known keys: {sorted(known)}")
        kwargs: dict[str, Any] = dict(defaults)
        kwargs.update({k: v for k, v in data.items() if k not in ("enc", "dec", "entropy")})  # entropy: derived from probs
        return cls(enc=_blocks(data["enc"], "enc"), dec=_blocks(data["dec"], "dec"), **kwargs)


def _blocks(blocks: Any, chain: str) -> tuple[str, ...]:
    """MMnas lists each block as a list of ops (summed); every published genotype has exactly one."""
    if not isinstance(blocks, list):
        raise ValueError(f"'{chain}' must be a list of blocks, got {type(blocks).__name__}")
    names = []
    for i, block in enumerate(blocks):
        ops = [block] if isinstance(block, str) else block
        if not isinstance(ops, list) or len(ops) != 1 or not isinstance(ops[0], str):
            raise ValueError(f"{chain} block {i} must hold exactly one op name, got {block!r}")
        names.append(ops[0])
    return tuple(names)


def save_arch_spec(spec: ArchSpec, path: str | Path, mmnas_format: bool = False) -> Path:
    """Write ``spec`` as JSON, atomically. ``mmnas_format=True`` writes what MMnas's
    ``train_*.py --ARCH_PATH`` reads: ``{"epoch<N>": genotype}`` with ``*_64`` names, no extra keys."""
    if mmnas_format:
        genotype = spec.to_dict(mmnas_names=True)
        obj: dict[str, Any] = {f"epoch{spec.epoch or 0}": {"enc": genotype["enc"], "dec": genotype["dec"]}}
    else:
        obj = spec.to_dict()
    return atomic_write_json(path, obj)


def load_arch_spec(path: str | Path, epoch: int | None = None) -> ArchSpec:
    """Read our spec files and MMnas's ``{"epochN": genotype}`` files (``epoch`` or the latest)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"architecture file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"architecture file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"architecture file {path} must hold a JSON object")
    if "enc" in data:
        if epoch is not None and data.get("epoch") not in (None, epoch):
            raise ValueError(f"{path} holds epoch {data.get('epoch')}, not the requested epoch {epoch}")
        return _parse(data, path, source=str(path))
    epochs = {int(m.group(1)): key for key in data if (m := _EPOCH_KEY.match(key))}
    if not epochs or len(epochs) != len(data):
        raise ValueError(f"{path} is neither a genotype ({{'enc', 'dec'}}) nor MMnas's {{'epochN': genotype}} file; keys: {sorted(data)}")
    chosen = max(epochs) if epoch is None else epoch
    if chosen not in epochs:
        raise ValueError(f"{path} has no 'epoch{chosen}'; it has epochs {sorted(epochs)}")
    return _parse(data[epochs[chosen]], path, source=str(path), epoch=chosen)


def _parse(data: Any, path: Path, **defaults: Any) -> ArchSpec:
    try:
        return ArchSpec.from_dict(data, **defaults)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"invalid architecture file {path}: {exc}") from exc


def named_spec(name: str) -> ArchSpec:
    """A shipped architecture: ``mmnas_vqa``, ``mmnas_vg`` (alias ``mmnas_vgd``), ``mmnas_itm``, ``mcan``."""
    if name not in _NAMED:
        raise KeyError(f"unknown named architecture {name!r}; known: {', '.join(_NAMED)}")
    file, task = _NAMED[name]
    spec = load_arch_spec(SPECS_DIR / file)
    return spec.replace(task=task, source=_MMNAS_SOURCE.format(file=file))


def named_specs() -> list[str]:
    return list(_NAMED)


def mcan_prior_spec(enc_depth: int, dec_depth: int) -> ArchSpec:
    """MMnas's MCAN-like prior for any depth: encoder SA, FFN alternating; decoder RSA, GA, FFN repeated."""
    enc_cycle, dec_cycle = ("self_att", "feed_forward"), ("rel_self_att", "guided_att", "feed_forward")
    return ArchSpec(
        enc=tuple(enc_cycle[i % 2] for i in range(enc_depth)),
        dec=tuple(dec_cycle[i % 3] for i in range(dec_depth)),
        source="mcan_prior",
    )


def random_spec(
    enc_depth: int,
    dec_depth: int,
    pools: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
) -> ArchSpec:
    """A uniformly random architecture from ``pools`` (default MMnas's), reproducible from ``seed``."""
    if enc_depth < 0 or dec_depth < 0:
        raise ValueError(f"depths must be non-negative, got {enc_depth}, {dec_depth}")
    pools = pools or DEFAULT_POOLS
    resolved = {c: canonical_pool(c, pools[c]) for c in CHAINS}
    rng = random.Random(seed)
    return ArchSpec(
        enc=tuple(rng.choice(resolved["enc"]) for _ in range(enc_depth)),
        dec=tuple(rng.choice(resolved["dec"]) for _ in range(dec_depth)),
        op_pools=resolved,
        seed=seed,
        source=f"random_spec(seed={seed})",
    )
